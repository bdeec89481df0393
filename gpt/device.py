"""The one device picker: `--device auto|cpu|cuda` (and train.device) mean the same everywhere."""
from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(preference: str = "auto", index: int = 0) -> torch.device:
    """auto: the GPU `index` when torch sees one, else the CPU; cuda: the GPU or a ValueError; cpu: the CPU."""
    if preference not in DEVICE_CHOICES:
        raise ValueError(f"device {preference!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but torch sees no CUDA GPU; use auto or cpu")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if index >= torch.cuda.device_count():
        raise ValueError(f"GPU index {index} asked for but only {torch.cuda.device_count()} GPUs are visible")
    return torch.device("cuda", index)
