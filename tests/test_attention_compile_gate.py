"""Compile gate for the attention variants the GPU suite can switch on (tests/compile_gate.py).

tests/test_attention.py gates the default launch table (the natural-order kernels). This file gates
what the suite's sweep may pick instead, so that the one GPU run never times (or commits) a config
that spills or does not fit:
- the _scheduled kernel twins (launch orders reverse and longest_first) at the table's tiles, for
  sm_80 and sm_90, aligned and ragged lengths;
- every candidate tile of bench/attention_cases.py's sweep, for sm_90 (the sweep runs on an
  H100/H200), bf16, causal, aligned lengths (the shapes it times).
- the atomic-dQ kernel (deterministic=False) at its table tiles, both GPUs.
All are marked slow (about 70 compiles). Run with triton 3.9 and, by hand, triton 3.6 (the GPU
machine's), where /tmp/tri36 holds `pip install --target /tmp/tri36 triton==3.6.0`:
    python -m pytest tests/test_attention_compile_gate.py
    PYTHONPATH=/tmp/tri36 python -m pytest tests/test_attention_compile_gate.py
    python -m tests.test_attention_compile_gate candidates|scheduled|atomic|probe   # print every usage
Measured 2026-11-27: every spec fits (0 B spill) with both versions; registers in kernels/attention.py.
"""
import importlib

import pytest
import torch

from tests import compile_gate

attn_mod = importlib.import_module("kernels.attention")
ok, why = compile_gate.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

_TYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
_BWD_SCALARS = {"H": "i32", "T_Q": "i32", "T_K": "i32", "sm_scale": "fp32", "qk_scale": "fp32"}


def _spec(kernel, pointers, strided, scalars, constexprs, tile, cc, aligned):
    """One CompileSpec as a launch would specialise it: last-dim strides 1 (constants), pointers
    and outer strides multiples of 16, T_Q/T_K too when `aligned` (training lengths)."""
    sig, const = {}, {}
    for t in strided:
        for axis in "bht":
            sig[f"stride_{t}{axis}"] = "i32"
        const[f"stride_{t}d"] = 1
    signature = {**pointers, **sig, **scalars}
    div16 = tuple(n for n in signature if n in pointers or n.startswith("stride")
                  or (aligned and n in ("T_Q", "T_K")))
    return compile_gate.CompileSpec(kernel, signature, {**const, **constexprs}, tile.num_warps,
                                    tile.num_stages, cc, div16)


def kernel_specs(kind, tile, cc, head_dim, dtype=torch.bfloat16, schedule=0, causal=True,
                 aligned=True):
    """The CompileSpec of one kernel (`kind`: forward, dkdv or dq) at `tile`; schedule 0 is the
    natural-order kernel, 1 and 2 its _scheduled twin."""
    ptr = "*" + _TYPE[dtype]
    common = {"CAUSAL": causal, "HEAD_DIM": head_dim, "DOT_PRECISION": attn_mod._dot_precision(dtype),
              "BLOCK_M": tile.block_m, "BLOCK_N": tile.block_n}
    if schedule:
        common["SCHEDULE"] = schedule
    suffix = "_scheduled" if schedule else ""
    if kind == "forward":
        return _spec(getattr(attn_mod, "_attn_fwd" + suffix),
                     {"Q": ptr, "K": ptr, "V": ptr, "O": ptr, "LSE": "*fp32"}, "qkvo",
                     {"H": "i32", "T_Q": "i32", "T_K": "i32", "qk_scale": "fp32"}, common, tile, cc,
                     aligned)
    if kind == "dkdv":
        return _spec(getattr(attn_mod, "_attn_bwd_dkdv" + suffix),
                     {"Q": ptr, "K": ptr, "V": ptr, "DO": ptr, "DK": ptr, "DV": ptr, "LSE": "*fp32",
                      "DELTA": "*fp32"}, ["q", "k", "v", "do", "dk", "dv"], _BWD_SCALARS, common,
                     tile, cc, aligned)
    if kind == "dkdv_atomic":  # always the scheduled form (SCHEDULE 0 = natural order)
        common.setdefault("SCHEDULE", 0)
        return _spec(attn_mod._attn_bwd_dkdv_atomic_dq,
                     {"Q": ptr, "K": ptr, "V": ptr, "DO": ptr, "DK": ptr, "DV": ptr, "LSE": "*fp32",
                      "DELTA": "*fp32", "DQ": "*fp32"}, ["q", "k", "v", "do", "dk", "dv", "dq"],
                     _BWD_SCALARS, common, tile, cc, aligned)
    return _spec(getattr(attn_mod, "_attn_bwd_dq" + suffix),
                 {"Q": ptr, "K": ptr, "V": ptr, "DO": ptr, "DQ": ptr, "LSE": "*fp32", "DELTA": "*fp32"},
                 ["q", "k", "v", "do", "dq"], _BWD_SCALARS, common, tile, cc, aligned)


def scheduled_specs():
    """The _scheduled twins at the table's tiles: reverse and longest_first, both GPUs, bf16,
    D = 64 and 128 (the model's and the benchmark's), aligned; ragged at D = 128 (tightest)."""
    specs = []
    for cc in (80, 90):
        for d, aligned in ((64, True), (128, True), (128, False)):
            cfgs = attn_mod.pick_configs((cc // 10, cc % 10), d, torch.bfloat16)
            for schedule in (1, 2):
                for kind in ("forward", "dkdv", "dq"):
                    specs.append(kernel_specs(kind, getattr(cfgs, kind), cc, d, schedule=schedule,
                                              aligned=aligned))
    return specs


def candidate_specs():
    """Every sweep candidate (bench/attention_cases.py) for sm_90, bf16, causal, aligned."""
    from bench import attention_cases as ac

    return [kernel_specs(kind, attn_mod.TileConfig(*tile), 90, d)
            for d, kinds in ac.SWEEP_CANDIDATES.items() for kind, tiles in kinds.items() for tile in tiles]


ATOMIC_PROBE = {128: [(32, 64, 8, 2), (32, 128, 8, 2), (64, 64, 8, 2), (16, 64, 4, 2), (32, 64, 4, 2)],
                64: [(32, 128, 8, 3), (64, 64, 8, 3), (64, 128, 8, 2), (32, 64, 4, 3)]}


def atomic_probe_specs():
    """Tiles to choose the atomic-dQ kernel's table from (python -m tests.test_attention_compile_gate probe)."""
    return [kernel_specs("dkdv_atomic", attn_mod.TileConfig(*t), cc, d)
            for cc in (80, 90) for d, tiles in ATOMIC_PROBE.items() for t in tiles]


def atomic_specs():
    """The atomic-dQ kernel (deterministic=False) at its table tile: every head dim on both GPUs,
    aligned; ragged at D = 64 and 128; longest_first at D = 128; fp32 (its own small tiles) at 128."""
    specs = []
    for cc in (80, 90):
        for d in attn_mod.SUPPORTED_HEAD_DIMS:
            tile = attn_mod.pick_configs((cc // 10, cc % 10), d, torch.bfloat16).dkdv_atomic
            specs.append(kernel_specs("dkdv_atomic", tile, cc, d))
            if d >= 64:
                specs.append(kernel_specs("dkdv_atomic", tile, cc, d, aligned=False))
        f32 = attn_mod.pick_configs((cc // 10, cc % 10), 128, torch.float32)
        specs.append(kernel_specs("dkdv_atomic", f32.dkdv_atomic or f32.dkdv, cc, 128, dtype=torch.float32,
                                  aligned=False))
    tile = attn_mod.pick_configs((9, 0), 128, torch.bfloat16).dkdv_atomic
    specs.append(kernel_specs("dkdv_atomic", tile, 90, 128, schedule=2))
    return specs


@pytest.mark.slow  # ~15-35 compiles; proven by hand with triton 3.9 and 3.6 (see the module doc)
def test_atomic_dq_kernel_fits_sm80_sm90():
    _check(atomic_specs())


def _check(specs):
    usages = compile_gate.compile_many(specs)
    failures = [f"{u}: {'; '.join(p)}" for u in usages if (p := compile_gate.fit_problems(u))]
    assert not failures, "compile gate failed:\n" + "\n".join(failures)
    return usages


@pytest.mark.slow  # ~15-35 compiles; proven by hand with triton 3.9 and 3.6 (see the module doc)
def test_scheduled_twins_fit_sm80_sm90():
    _check(scheduled_specs())


@pytest.mark.slow  # ~15-35 compiles; proven by hand with triton 3.9 and 3.6 (see the module doc)
def test_sweep_candidates_fit_sm90():
    _check(candidate_specs())


if __name__ == "__main__":  # print every usage (to pick candidates): python -m tests.test_attention_compile_gate
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "candidates"
    specs = {"candidates": candidate_specs, "scheduled": scheduled_specs, "probe": atomic_probe_specs,
             "atomic": lambda: atomic_specs()}[which]()
    for u in compile_gate.compile_many(specs):
        problems = compile_gate.fit_problems(u)
        print(("FAIL " if problems else "ok   ") + str(u) + ("  " + "; ".join(problems) if problems else ""),
              flush=True)
