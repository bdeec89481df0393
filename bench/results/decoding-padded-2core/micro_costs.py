"""Micro-costs on the Spider model: prefill (alone vs padded), one decoding step by rows (padded vs not), reorder."""
import sys, time, json
import torch
torch.set_num_threads(2)
torch.set_grad_enabled(False)
from pathlib import Path
from gpt.model import KVCache
from gpt.generate import left_pad
from text2sql.prepare import load_examples
from text2sql.prompt import fit_and_encode_prompt
from train.checkpoint import load_for_inference
run, data = sys.argv[1], Path(sys.argv[2])
examples, meta = load_examples(data, "val")
model, tok, state, ckpt = load_for_inference(run, torch.device("cpu"), data / meta["tokenizer"])
cfg = model.config
prompts = sorted((fit_and_encode_prompt(tok, e.schema, e.question, 512, 96, e.db_path) for e in examples[:80]), key=len)
chunk = prompts[60:68]
res = {"lengths": [len(p) for p in chunk]}
def best(f, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return round(min(ts) * 1000, 2)
def alone():
    for p in chunk:
        model(torch.tensor([p]), cache=KVCache(cfg, 1, len(p) + 128, "cpu"))
def padded():
    idx, pad = left_pad(chunk, "cpu", 512)
    model(idx, cache=KVCache(cfg, len(chunk), idx.shape[1] + 128, "cpu", pad=pad))
res["prefill_8_alone_ms"] = best(alone)
res["prefill_8_padded_ms"] = best(padded)
L = 420
for rows in (4, 8, 16, 32):
    for padq in (False, True):
        cache = KVCache(cfg, rows, L + 128, "cpu", pad=torch.zeros(rows, dtype=torch.long) if padq else None)
        model(torch.randint(0, 100, (rows, L)), cache=cache)
        x = torch.randint(0, 100, (rows, 1))
        def step():
            for _ in range(10):
                model(x, cache=cache); cache.length -= 1
        res[f"step_rows{rows}_{'padded' if padq else 'unpadded'}_ms"] = round(best(step) / 10, 3)
cache = KVCache(cfg, 32, L + 128, "cpu", pad=torch.zeros(32, dtype=torch.long))
model(torch.randint(0, 100, (32, L)), cache=cache)
idx = torch.arange(28)
def reorder():
    c = KVCache(cfg, 32, L + 128, "cpu"); c.k, c.v, c.length = cache.k, cache.v, cache.length
    c.reorder(idx)
res["reorder_32_to_28_ms"] = best(reorder)
def reorder_gen():
    cache.k[:, :, :, L - 20:L] = cache.k[:, torch.randperm(32), :, L - 20:L]
    cache.v[:, :, :, L - 20:L] = cache.v[:, torch.randperm(32), :, L - 20:L]
res["reorder_generated_20pos_ms"] = best(reorder_gen)
print(json.dumps(res))
