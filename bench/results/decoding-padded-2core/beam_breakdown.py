"""Where beam search's time goes (wall-clock accumulators, no profiler): Spider val, the first N questions."""
import sys, time, json, collections
import torch
torch.set_num_threads(2)
torch.set_grad_enabled(False)
from pathlib import Path
import gpt.model as gm, gpt.generate as gg
from text2sql.prepare import load_examples
from text2sql.decoding import decode_sql_batch, sql_context
from text2sql.prompt import fit_and_encode_prompt
from train.checkpoint import load_for_inference
run, data, n, mode = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
examples, meta = load_examples(data, "val")
examples = [e for e in examples if e.db_path][:n]
model, tok, state, ckpt = load_for_inference(run, torch.device("cpu"), data / meta["tokenizer"])
block = model.config.block_size
prompts = [fit_and_encode_prompt(tok, e.schema, e.question, block, 96, e.db_path) for e in examples]
contexts = [sql_context(e) for e in examples]
acc = collections.defaultdict(float); cnt = collections.defaultdict(int); rows = collections.defaultdict(int)
def wrap(obj, name, key, count_rows=False):
    f = getattr(obj, name)
    def w(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); acc[key] += time.perf_counter() - t; cnt[key] += 1
        if count_rows: rows[key] += a[1].shape[0] * a[1].shape[1]
        return r
    setattr(obj, name, w)
wrap(gm.GPT, "forward", "forward", count_rows=True)
wrap(gm.KVCache, "reorder", "reorder")
if hasattr(gg, "_reorder_generated"): wrap(gg, "_reorder_generated", "reorder_generated")
wrap(gg, "_best_allowed", "best_allowed")
wrap(gg, "mask_logits", "mask_logits")
t0 = time.perf_counter()
out = decode_sql_batch(model, tok, prompts, contexts, mode, 128, 4, 32)
total = time.perf_counter() - t0
print(json.dumps({"tree": gg.__file__, "mode": mode, "n": n, "total_s": round(total, 3),
                  "s": {k: round(v, 3) for k, v in acc.items()}, "calls": dict(cnt), "forward_tokens": dict(rows)}))
