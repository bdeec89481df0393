"""Run output on rank 0: a JSONL log (one object per line), console lines, MFU and the loss plot."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peak per GPU (vendor datasheets, without sparsity), matched on the device name.
GPU_PEAK_BF16_FLOPS = [
    ("H200", 989.4e12), ("H100", 989.4e12), ("H800", 989.4e12), ("GH200", 989.4e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("A10G", 70e12), ("4090", 165.2e12),
    ("3090", 71e12), ("V100", 125e12), ("T4", 65e12),
]


def measured_matmul_flops(device: torch.device, dtype=torch.float32, n: int = 1024, trials: int = 8,
                          seconds: float = 0.1) -> float:
    """FLOP/s of an n x n matmul measured now, the best of `trials` short timings (the least disturbed
    by other work on a shared machine): the peak used for MFU where no datasheet value applies (CPUs),
    so MFU reads as a fraction of what this machine's matmul really does."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    best = 0.0
    for _ in range(trials):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        iters, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            iters += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, 2 * n ** 3 * iters / (time.perf_counter() - t0))
    return best


def peak_flops(device: torch.device, override: float = 0.0) -> tuple[float | None, str]:
    """(peak FLOP/s per device, where the number comes from); (None, why) on a CPU without an override.

    No CPU peak is guessed: a matmul timed at start-up on a shared machine is a floor, not a peak (MFU read
    151% under load), and it is an fp32 rate that bf16 autocast exceeds. Give train.peak_flops for CPU MFU."""
    if override > 0:
        return override, "config train.peak_flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_BF16_FLOPS:
            if key in name:
                return flops, f"{name} bf16 datasheet"
        return measured_matmul_flops(device, torch.bfloat16, 4096), f"{name} measured bf16 matmul"
    return None, "no CPU peak (set train.peak_flops for MFU)"


class RunLog:
    """Appends JSON records to <out_dir>/log.jsonl (rank 0 only; other ranks get a no-op log)."""

    def __init__(self, out_dir, enabled: bool, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(out_dir) / "log.jsonl"
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            # drop what the interrupted run logged after the checkpoint we resume from: the resumed run
            # logs those steps again, and the file stays one curve. A line cut short by the kill is dropped.
            keep = [json.dumps(r) for r in read_log(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, **record) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def read_log(path) -> list[dict]:
    """The records of a log.jsonl; a line that is not a JSON object (a write cut short by a kill or a full
    disk) is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def plot_loss(log_path, png_path, title: str = "") -> None:
    """Train and validation loss against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "val"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train")
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
