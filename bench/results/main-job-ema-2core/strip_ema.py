"""Copy a run's newest checkpoint without its weight average (to evaluate the training weights)."""
import sys
from train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
src, dst = sys.argv[1], sys.argv[2]
state = load_checkpoint(latest_checkpoint(src))
state.pop("ema")
print(save_checkpoint(dst, int(state["step"]), state, 1))
