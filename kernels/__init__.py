"""Custom kernels: one file per op, each choosing Triton or PyTorch (see kernels/backend.py)."""
from kernels import reference
from kernels.attention import attention, attention_layout, attention_qkv
from kernels.backend import VALID_BACKENDS, backend_name
from kernels.cross_entropy import cross_entropy, linear_cross_entropy
from kernels.layernorm import layer_norm

__all__ = ["attention", "attention_qkv", "attention_layout", "cross_entropy", "linear_cross_entropy", "layer_norm", "reference",
           "backend_name", "VALID_BACKENDS"]
