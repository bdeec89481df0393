"""Where each decode mode's time goes (issue 11): the modes of bench.decoding run on one split, with the
model's forward passes, the constraint's two entry points, beam search's candidate walk and the KV-cache
copies timed by wrappers (perf_counter around each call; the wrappers add a few percent).

    flock /tmp/cpu-heavy.lock .venv/bin/python bench/results/decoding-breakdown-2core/breakdown.py \\
        CHECKPOINT DATA SPLIT greedy,constrained,beam+exec,greedy > OUT.txt

Milliseconds per question, each mode from cold constraint caches (SchemaIndex.clear_shared), batch 32,
width 4, 2 threads. Rows: fwd_prompt (the prompts' forward), fwd_step (one-token forwards; rows: mean rows
per call), allows / allowed_ids (the constraint, including the SQL parser), best_allowed (beam search's
candidate walk, which contains the constraint calls), reorder (beam cache reorders; reorder0: the first,
prompt rows copied to every beam), drop (finished rows leaving the cache), parse (SQL prefix parses).
"""
import collections
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(2)
torch.set_grad_enabled(False)

import gpt.generate as G  # noqa: E402
import gpt.model as M  # noqa: E402
import text2sql.sql_constraint as S  # noqa: E402
from text2sql.evaluate import evaluate, tokenizer_override  # noqa: E402
from text2sql.prepare import load_examples  # noqa: E402
from text2sql.prompt import DEFAULT_MAX_SQL_TOKENS  # noqa: E402
from train.checkpoint import load_for_inference  # noqa: E402

ck, data, split, modes = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
examples, meta = load_examples(data, split)
tok = tokenizer_override(ck, data, meta)
model, tok, state, _ = load_for_inference(ck, torch.device("cpu"), tok)
max_sql = int(state.get("data_meta", {}).get("max_sql_tokens", meta.get("max_sql_tokens", DEFAULT_MAX_SQL_TOKENS)))
T: dict = collections.defaultdict(float)
C: collections.Counter = collections.Counter()


def timed(owner, name, key):
    f = getattr(owner, name)

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            T[key] += time.perf_counter() - t0
            C[key] += 1
    setattr(owner, name, wrapper)


forward = M.GPT.forward


def timed_forward(self, idx, *a, **k):
    t0 = time.perf_counter()
    out = forward(self, idx, *a, **k)
    key = "fwd_prompt" if idx.shape[1] > 1 else "fwd_step"
    T[key] += time.perf_counter() - t0
    C[key] += 1
    C[key + " rows"] += idx.shape[0]
    return out


M.GPT.forward = timed_forward
if hasattr(G, "_reorder_generated"):  # (before the shared-prefix beam cache)
    timed(G, "_reorder_generated", "reorder")
    timed(M.KVCache, "reorder", "reorder0")
else:
    timed(M.BeamKVCache, "reorder_generated", "reorder")
    timed(M.BeamKVCache, "drop", "drop")
timed(M.KVCache, "drop", "drop")
timed(S.SQLConstraint, "allows", "allows")
timed(S.SQLConstraint, "allowed_ids", "allowed_ids")
timed(G, "_best_allowed", "best_allowed")
timed(S, "parse_prefix", "parse")
print(f"{ck} on {data} {split}: {len(examples)} questions")
for mode in modes:
    S.SchemaIndex.clear_shared()
    T.clear()
    C.clear()
    r = evaluate(model, tok, examples, model.config.block_size, max_sql, 128, 0.0, 32, 2.0, progress=False,
                 decode=mode)
    s = r["summary"]
    n = s["n"]
    print(f"{mode}: execution accuracy {s['execution_accuracy']:.3f}, {1000 * s['seconds_per_question']:.2f} ms a question")
    for k in sorted(T):
        print(f"  {k:<13} {1000 * T[k] / n:7.2f} ms/q   {C[k]} calls")
    for k in sorted(C):
        if k.endswith(" rows"):
            print(f"  {k:<13} mean {C[k] / C[k[:-5]]:.1f}")
