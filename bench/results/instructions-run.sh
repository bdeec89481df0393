#!/usr/bin/env bash
# Reproduces bench/results/instructions-cpu.{json,md}: pretrain configs/small.json on tinyshakespeare for a
# fixed step count, fine-tune it on 85% of the shared instruction data (data/instructions_source.py), and
# measure the held-out 15%: token-weighted loss on the responses before and after fine-tuning, and greedy
# responses to a few held-out prompts.   Run from the repository root:  bash bench/results/instructions-run.sh
set -euo pipefail
SHARED=${TEXT2SQL_SHARED:-../shared}
PRE_STEPS=${PRE_STEPS:-300}
FT_STEPS=${FT_STEPS:-150}
OUT=${OUT:-bench/results}
rm -rf runs/instr-pretrain runs/instr-ft
t0=$(date +%s)
python -m data.prepare --source text --input "$SHARED/data/text/tinyshakespeare.txt" \
    --out data/processed/instr-pretrain --vocab-size 2048
python -m train --config small --set data.dir=data/processed/instr-pretrain train.out_dir=runs/instr-pretrain \
    train.max_steps=$PRE_STEPS train.progress=false
t1=$(date +%s)
python -m data.prepare --source instructions --input "$SHARED/data/instructions/instruction-data.json" \
    --tokenizer data/processed/instr-pretrain/tokenizer.tiktoken --instructions-block-size 256 \
    --out data/processed/instructions
python -m train --config small --set data.dir=data/processed/instructions train.init_from=runs/instr-pretrain \
    train.out_dir=runs/instr-ft train.max_steps=$FT_STEPS train.lr=5e-4 train.min_lr=5e-5 train.warmup_steps=10 \
    train.eval_interval=50 train.progress=false
t2=$(date +%s)
PRETRAIN_S=$((t1 - t0)) FINETUNE_S=$((t2 - t1)) PRE_STEPS=$PRE_STEPS FT_STEPS=$FT_STEPS OUT=$OUT python - <<'EOF'
import json, os, platform, subprocess, time
from pathlib import Path

import torch

from data.instructions_source import format_prompt
from data.shards import BatchLoader, ShardDataset, read_meta
from gpt.generate import generate_ids
from train.checkpoint import load_for_inference

torch.manual_seed(0)
data = Path("data/processed/instructions")
meta = read_meta(data)
held_out = json.loads((data / "instructions" / "val.json").read_text())


@torch.no_grad()
def held_out_loss(model) -> tuple[float, int]:
    """Mean cross-entropy per learned (response) token over every val window, each read once."""
    ds = ShardDataset(data, "val")
    loader = BatchLoader(ds, 1, model.config.block_size, shuffle=False)
    total, count = 0.0, 0
    for g in range(loader.batches_per_epoch):
        x, y = loader.batch(g)
        n = int((y != -100).sum())
        if n:
            total += float(model(x, y)) * n
            count += n
    return total / count, count


results = {}
for name, run in (("pretrained", "runs/instr-pretrain"), ("fine-tuned", "runs/instr-ft")):
    model, tok, state, path = load_for_inference(run, torch.device("cpu"))
    loss, n_tokens = held_out_loss(model)
    end = tok.special_tokens["<|endoftext|>"]
    samples = []
    for record in held_out[:5]:
        ids = generate_ids(model, tok.encode_ordinary(format_prompt(record)), max_new_tokens=60, temperature=0.0,
                           stop_ids={end})
        samples.append({"instruction": record["instruction"], "input": record["input"],
                        "reference": record["output"], "response": tok.decode(ids)})
    results[name] = {"checkpoint": str(path), "step": state.get("step"), "held_out_loss": round(loss, 4),
                     "held_out_response_tokens": n_tokens, "samples": samples}

cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")), platform.processor())
payload = {
    "command": "bash bench/results/instructions-run.sh",
    "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    "machine": f"{cpu}, {os.cpu_count()} cores visible (shared with other jobs), torch {torch.__version__}",
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "pretrain": {"config": "configs/small.json", "data": "tinyshakespeare, BPE 2048", "steps": int(os.environ["PRE_STEPS"])},
    "finetune": {"steps": int(os.environ["FT_STEPS"]), "lr": 5e-4, "records": meta["instructions"]["records"],
                 "skipped_too_long": {k: len(v) for k, v in meta["instructions"]["skipped_too_long"].items()},
                 "block_size": meta["block_size"]},
    "seconds": {"pretrain (prepare + train)": int(os.environ["PRETRAIN_S"]),
                "finetune (prepare + train)": int(os.environ["FINETUNE_S"])},
    "results": results,
}
out = Path(os.environ["OUT"])
(out / "instructions-cpu.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
pre, ft = results["pretrained"], results["fine-tuned"]
lines = [
    "# Instruction fine-tuning on CPU (data/instructions_source.py)", "",
    f"Command: `{payload['command']}` (commit {payload['commit']}), {payload['date']}, on {payload['machine']}.", "",
    f"configs/small.json pretrained {payload['pretrain']['steps']} steps on tinyshakespeare (BPE 2048), then fine-tuned "
    f"{payload['finetune']['steps']} steps on {payload['finetune']['records']['train']} of the 1,100 shared instruction "
    f"records (Alpaca template, loss on the response only; records over {payload['finetune']['block_size']} tokens "
    f"skipped: {payload['finetune']['skipped_too_long']}). Held out: {payload['finetune']['records'].get('val')} records.", "",
    "| model | step | held-out loss (per response token) | response tokens |", "| --- | --- | --- | --- |",
    f"| pretrained only | {pre['step']} | {pre['held_out_loss']:.3f} | {pre['held_out_response_tokens']} |",
    f"| fine-tuned | {ft['step']} | {ft['held_out_loss']:.3f} | {ft['held_out_response_tokens']} |", "",
    "Wall time: " + ", ".join(f"{k} {v} s" for k, v in payload["seconds"].items()) + ".", "",
    "## Greedy responses to held-out prompts", "",
]
for i, (a, b) in enumerate(zip(pre["samples"], ft["samples"]), 1):
    lines += [f"**{i}. {a['instruction']}**" + (f" Input: {a['input']}" if a["input"] else ""), "",
              f"- reference: {a['reference']!r}", f"- pretrained only: {a['response']!r}",
              f"- fine-tuned: {b['response']!r}", ""]
(out / "instructions-cpu.md").write_text("\n".join(lines))
print("\n".join(lines))
EOF
