"""Which implementation a public kernel function runs: Triton or PyTorch.

KERNELS_BACKEND=auto   (default) Triton for CUDA tensors, PyTorch for CPU tensors
KERNELS_BACKEND=triton Triton always (CPU tensors need TRITON_INTERPRET=1, Triton's interpreter)
KERNELS_BACKEND=torch  PyTorch always (PyTorch's own fused ops, not the naive reference)

The variable is read on every call so tests can flip it with monkeypatch.setenv.
"""
import os

import torch

VALID_BACKENDS = ("auto", "triton", "torch")


def backend_name() -> str:
    name = os.environ.get("KERNELS_BACKEND", "auto").strip().lower() or "auto"
    if name not in VALID_BACKENDS:
        raise ValueError(
            f"KERNELS_BACKEND={name!r} is not a valid backend; use one of {', '.join(VALID_BACKENDS)}"
        )
    return name


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(x: torch.Tensor) -> bool:
    """True when the op on tensor `x` should run the Triton kernel."""
    name = backend_name()
    if name == "torch":
        return False
    if name == "triton":
        if x.device.type != "cuda" and not triton_interpreting():
            raise ValueError(
                "KERNELS_BACKEND=triton on a CPU tensor needs TRITON_INTERPRET=1 "
                "(Triton's interpreter); or use KERNELS_BACKEND=auto"
            )
        return True
    return x.device.type == "cuda"


# Under torch.compile every Triton path is a torch custom op (text2sql::*, with a fake
# implementation): Dynamo records one opaque node per op and never traces into the launcher, so
# Triton's CPU interpreter (TRITON_INTERPRET=1) compiles with fullgraph=True like a GPU does; the
# op's Python body runs only when the compiled graph calls it. No torch.compiler.disable needed.
