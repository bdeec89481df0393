"""The switchable attention variants (kernels/attention.py): launch orders and the decisions file.

The launch orders (SCHEDULES: natural, reverse, longest_first) change only which program computes
which tile, so every order must give exactly the natural order's numbers: checked bit for bit under
TRITON_INTERPRET=1 (fp32 and fp16; the interpreter's tl.dot is wrong for bf16 operands), plus the
FlashAttention accuracy rule against the float64 reference. The decisions file (kernels/tuned.json,
written by the GPU suite's sweep) is read by pick_configs: its entries override the table for their
capability and head dim, bad entries fall back to the table, and KERNELS_TUNED=off ignores it.
"""
import importlib
import json

import pytest
import torch

from kernels import reference
from kernels.backend import triton_interpreting

attn_mod = importlib.import_module("kernels.attention")
TileConfig, AttentionConfigs = attn_mod.TileConfig, attn_mod.AttentionConfigs
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")


@pytest.fixture
def triton_backend(monkeypatch):
    if not triton_interpreting():
        pytest.skip("run with TRITON_INTERPRET=1 to test the Triton kernels on CPU")
    monkeypatch.setenv("KERNELS_BACKEND", "triton")


def _inputs(B, H, Tq, Tk, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, t, D, generator=g) for t in (Tq, Tk, Tk))
    do = torch.randn(B, H, Tq, D, generator=g)
    return [t.to(dtype) for t in (q, k, v, do)]


def _fwd_bwd(fn, q, k, v, do, **kw):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v, **kw)
    out.backward(do)
    return [out.detach(), q.grad, k.grad, v.grad]


def _naive(q, k, v, causal):
    """Same-precision naive attention: the yardstick of the accuracy rule."""
    tq, tk = q.shape[-2], k.shape[-2]
    s = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if causal:
        i = torch.arange(tq)[:, None]
        j = torch.arange(tk)[None, :]
        s = s.masked_fill(j > i + (tk - tq), float("-inf"))
    return torch.nan_to_num(torch.softmax(s, -1)) @ v


CASES = [  # (B, H, Tq, Tk, D, causal, dtype): ragged, Tq < Tk, Tq > Tk, several heads
    (2, 3, 70, 70, 32, True, F32),
    (1, 2, 129, 129, 64, True, F16),
    (1, 1, 33, 91, 32, True, F32),
    (1, 1, 100, 40, 32, True, F16),
    (1, 2, 64, 64, 128, False, F32),
]


@pytest.mark.parametrize("schedule", ["reverse", "longest_first"])
@pytest.mark.parametrize("B,H,Tq,Tk,D,causal,dtype", CASES)
def test_schedule_matches_natural_and_reference(triton_backend, monkeypatch, schedule, B, H, Tq, Tk,
                                                D, causal, dtype):
    q, k, v, do = _inputs(B, H, Tq, Tk, D, dtype, seed=Tq * 7 + Tk + D)
    monkeypatch.setenv("KERNELS_ATTENTION_SCHEDULE", "natural")
    natural = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=causal)
    monkeypatch.setenv("KERNELS_ATTENTION_SCHEDULE", schedule)
    got = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=causal)
    # Same tiles, same loop order inside each program: the same bits, only computed elsewhere.
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, natural):
        assert torch.equal(a, b), f"{schedule}: {name} differs from the natural order"
    want = _fwd_bwd(reference.attention, *(t.double() for t in (q, k, v, do)), causal=causal)
    naive = _fwd_bwd(lambda q, k, v, causal: _naive(q, k, v, causal), q, k, v, do, causal=causal)
    atol = {F32: 1e-6, F16: 1e-4}[dtype]
    for name, a, n, w in zip(("out", "dq", "dk", "dv"), got, naive, want):
        err = (a.double() - w).abs().max().item()
        err_naive = (n.double() - w).abs().max().item()
        assert err <= 2 * err_naive + atol, f"{name}: {err:.3g} > 2 x {err_naive:.3g} + {atol}"


@pytest.mark.parametrize("schedule", ["reverse", "longest_first"])
def test_schedule_with_other_tile_shapes(triton_backend, monkeypatch, schedule):
    """Tile shapes with BLOCK_M != BLOCK_N in both directions, under each launch order."""
    cfgs = AttentionConfigs(TileConfig(16, 64, 4, 1), TileConfig(64, 16, 4, 1),
                            TileConfig(16, 32, 4, 1), preprocess_block_m=64, schedule=schedule)
    monkeypatch.setattr(attn_mod, "pick_configs", lambda *a: cfgs)
    q, k, v, do = _inputs(1, 2, 77, 77, 32, F32, seed=5)
    got = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=True)
    want = _fwd_bwd(reference.attention, *(t.double() for t in (q, k, v, do)), causal=True)
    for a, w in zip(got, want):
        assert (a.double() - w).abs().max().item() < 1e-4


def _check_fa_rule(got, q, k, v, do, causal):
    want = _fwd_bwd(reference.attention, *(t.double() for t in (q, k, v, do)), causal=causal)
    naive = _fwd_bwd(lambda q, k, v, causal: _naive(q, k, v, causal), q, k, v, do, causal=causal)
    atol = {F32: 1e-6, F16: 1e-4}[q.dtype]
    for name, a, n, w in zip(("out", "dq", "dk", "dv"), got, naive, want):
        assert torch.isfinite(a).all(), name
        err = (a.double() - w).abs().max().item()
        err_naive = (n.double() - w).abs().max().item()
        assert err <= 2 * err_naive + atol, f"{name}: {err:.3g} > 2 x {err_naive:.3g} + {atol}"


@pytest.mark.parametrize("schedule", ["natural", "longest_first"])
@pytest.mark.parametrize("B,H,Tq,Tk,D,causal,dtype", CASES)
def test_atomic_dq_matches_reference(triton_backend, monkeypatch, schedule, B, H, Tq, Tk, D, causal, dtype):
    """deterministic=False: dQ from fp32 atomics inside the dK/dV kernel. dK, dV and the output are
    the deterministic path's bits; dQ is as accurate (the FA rule against float64)."""
    q, k, v, do = _inputs(B, H, Tq, Tk, D, dtype, seed=Tq * 7 + Tk + D + 1)
    monkeypatch.setenv("KERNELS_ATTENTION_SCHEDULE", schedule)
    exact = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=causal)
    got = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=causal, deterministic=False)
    for name, a, b in zip(("out", "dk", "dv"), (got[0], got[2], got[3]), (exact[0], exact[2], exact[3])):
        assert torch.equal(a, b), name
    _check_fa_rule(got, q, k, v, do, causal)


def test_atomic_dq_env_and_tiles(triton_backend, monkeypatch):
    """KERNELS_ATTENTION_DQ=atomic forces the atomic backward; its own tile (dkdv_atomic) is used."""
    cfgs = AttentionConfigs(TileConfig(32, 16, 4, 1), TileConfig(16, 32, 4, 1), TileConfig(32, 16, 4, 1),
                            preprocess_block_m=32, dkdv_atomic=TileConfig(64, 16, 4, 1))
    monkeypatch.setattr(attn_mod, "pick_configs", lambda *a: cfgs)
    monkeypatch.setenv("KERNELS_ATTENTION_DQ", "atomic")
    launched = []
    real = attn_mod._launch
    monkeypatch.setattr(attn_mod, "_launch", lambda nat, sch, *a, **kw: (launched.append(sch.__name__ if nat is None
                                                                                         else nat.__name__),
                                                                          real(nat, sch, *a, **kw)))
    q, k, v, do = _inputs(1, 2, 45, 45, 32, F32, seed=11)
    got = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=True)
    assert "_attn_bwd_dkdv_atomic_dq" in launched and "_attn_bwd_dq" not in launched
    _check_fa_rule(got, q, k, v, do, True)


def test_atomic_dq_under_torch_compile(triton_backend):
    q, k, v, do = _inputs(1, 1, 20, 20, 32, F32, seed=4)
    compiled = torch.compile(lambda q, k, v: attn_mod.attention(q, k, v, deterministic=False),
                             backend="aot_eager", fullgraph=True)
    got = _fwd_bwd(compiled, q, k, v, do)
    want = _fwd_bwd(lambda q, k, v: attn_mod.attention(q, k, v, deterministic=False), q, k, v, do)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(got, want))


def test_bad_schedule_env_is_a_value_error(monkeypatch):
    monkeypatch.setenv("KERNELS_ATTENTION_SCHEDULE", "fastest")
    with pytest.raises(ValueError, match="KERNELS_ATTENTION_SCHEDULE"):
        attn_mod.pick_configs(None, 64, F32)


# ----------------------------------------------------------------------------------------------
# The decisions file
# ----------------------------------------------------------------------------------------------

def _write(tmp_path, data) -> str:
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps(data))
    attn_mod._load_tuned.cache_clear()
    return str(path)


def test_no_decisions_file_means_the_table(monkeypatch, tmp_path):
    monkeypatch.delenv("KERNELS_ATTENTION_SCHEDULE", raising=False)
    monkeypatch.setenv("KERNELS_TUNED", str(tmp_path / "absent.json"))
    for cc in ((8, 0), (9, 0)):
        for d in attn_mod.SUPPORTED_HEAD_DIMS:
            table = attn_mod._TABLE_SM90_16BIT if cc[0] == 9 else attn_mod._TABLE_SM80_16BIT
            cfgs = attn_mod.pick_configs(cc, d, BF16)
            assert (cfgs.forward, cfgs.dkdv, cfgs.dq) == table[d]
            assert cfgs.schedule == "natural"


def test_decisions_file_overrides_its_entry_only(monkeypatch, tmp_path):
    monkeypatch.delenv("KERNELS_ATTENTION_SCHEDULE", raising=False)
    path = _write(tmp_path, {"attention": {"sm_90": {"128": {
        "dkdv": [64, 128, 8, 3], "dq": [128, 64, 8, 2], "schedule": "reverse"}}}})
    monkeypatch.setenv("KERNELS_TUNED", path)
    cfgs = attn_mod.pick_configs((9, 0), 128, BF16)
    assert cfgs.dkdv == TileConfig(64, 128, 8, 3) and cfgs.dq == TileConfig(128, 64, 8, 2)
    assert cfgs.forward == attn_mod._TABLE_SM90_16BIT[128][0]  # not in the entry: the table's
    assert cfgs.schedule == "reverse"
    assert attn_mod.pick_configs((9, 0), 64, F16).schedule == "natural"      # other head dim
    assert attn_mod.pick_configs((8, 0), 128, BF16).dkdv == attn_mod._TABLE_SM80_16BIT[128][1]
    assert attn_mod.pick_configs((9, 0), 128, F32).dkdv == attn_mod._FP32[1]  # fp32: exact path
    monkeypatch.setenv("KERNELS_ATTENTION_SCHEDULE", "longest_first")          # the env var wins
    assert attn_mod.pick_configs((9, 0), 128, BF16).schedule == "longest_first"
    monkeypatch.setenv("KERNELS_TUNED", "off")
    monkeypatch.delenv("KERNELS_ATTENTION_SCHEDULE")
    assert attn_mod.pick_configs((9, 0), 128, BF16).dkdv == attn_mod._TABLE_SM90_16BIT[128][1]


@pytest.mark.parametrize("bad", [[48, 64, 8, 3], [64, 64, 3, 3], [64, 64], "64x64", [8, 64, 4, 2]])
def test_bad_entries_fall_back_to_the_table(monkeypatch, tmp_path, bad):
    path = _write(tmp_path, {"attention": {"sm_90": {"64": {"forward": bad, "schedule": "warp9"}}}})
    monkeypatch.setenv("KERNELS_TUNED", path)
    monkeypatch.delenv("KERNELS_ATTENTION_SCHEDULE", raising=False)
    cfgs = attn_mod.pick_configs((9, 0), 64, BF16)
    assert cfgs.forward == attn_mod._TABLE_SM90_16BIT[64][0] and cfgs.schedule == "natural"


def test_unreadable_decisions_file_warns_and_uses_the_table(monkeypatch, tmp_path):
    path = tmp_path / "tuned.json"
    path.write_text("{not json")
    attn_mod._load_tuned.cache_clear()
    monkeypatch.setenv("KERNELS_TUNED", str(path))
    with pytest.warns(UserWarning, match="decisions file"):
        cfgs = attn_mod.pick_configs((9, 0), 128, BF16)
    assert cfgs.dkdv == attn_mod._TABLE_SM90_16BIT[128][1]


def test_committed_decisions_file_is_valid():
    """If kernels/tuned.json is committed, every entry in it is one pick_configs accepts."""
    if not attn_mod.TUNED_PATH.exists():
        pytest.skip("no kernels/tuned.json committed yet (the GPU suite writes one)")
    data = json.loads(attn_mod.TUNED_PATH.read_text())
    for arch, entries in data.get("attention", {}).items():
        assert arch.startswith("sm_") and arch[3:].isdigit(), arch
        for d, entry in entries.items():
            assert int(d) in attn_mod.SUPPORTED_HEAD_DIMS
            for kind in ("forward", "dkdv", "dq", "dkdv_atomic"):
                if kind in entry:
                    fallback = TileConfig(1, 1, 1, 1)
                    assert attn_mod._tile(entry[kind], fallback) != fallback, (arch, d, kind)
            assert entry.get("schedule", "natural") in attn_mod.SCHEDULES


def test_launch_grids(monkeypatch):
    """_launch: natural -> the original kernel over (tiles, B*H); reverse -> the twin over the same
    grid; longest_first -> the twin over (B*H, tiles), or reverse when tiles exceed grid dim 1."""
    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *a, **kw: calls.append((self.name, grid, kw.get("SCHEDULE")))

    nat, sch = Fake("natural"), Fake("scheduled")
    attn_mod._launch(nat, sch, "natural", 32, 6, (), {})
    attn_mod._launch(nat, sch, "reverse", 32, 6, (), {})
    attn_mod._launch(nat, sch, "longest_first", 32, 6, (), {})
    attn_mod._launch(nat, sch, "longest_first", 70000, 6, (), {})
    assert calls == [("natural", (32, 6), None), ("scheduled", (32, 6), 1),
                     ("scheduled", (6, 32), 2), ("scheduled", (70000, 6), 1)]


# ----------------------------------------------------------------------------------------------
# GPU: every launch order gives the natural order's bits (bf16, ragged and aligned, both head dims)
# ----------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("T,D", [(1000, 128), (1024, 64)], ids=["q1000-d128", "q1024-d64"])
def test_cuda_schedules_match_natural(monkeypatch, T, D):
    monkeypatch.setenv("KERNELS_BACKEND", "auto")
    g = torch.Generator(device="cuda").manual_seed(T + D)
    q, k, v, do = (torch.randn(2, 3, T, D, generator=g, device="cuda").to(BF16) for _ in range(4))
    results = {}
    for schedule in attn_mod.SCHEDULES:
        monkeypatch.setenv("KERNELS_ATTENTION_SCHEDULE", schedule)
        results[schedule] = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=True)
    # The same tiles and loop order in every program: expected bit for bit (the twins compile the
    # same body); allowed to differ by bf16 rounding only, should a compiler order an FMA otherwise.
    for schedule, got in results.items():
        assert all(torch.isfinite(t).all() for t in got)
        for name, a, b in zip(("out", "dq", "dk", "dv"), got, results["natural"]):
            rel = ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
            assert rel < 1e-2, f"{schedule}: {name} differs from the natural order by {rel:.3g}"


@pytest.mark.cuda
@pytest.mark.parametrize("T,D", [(1000, 128), (1024, 64)], ids=["q1000-d128", "q1024-d64"])
def test_cuda_atomic_dq(monkeypatch, T, D):
    """deterministic=False on a GPU (bf16): the output is the deterministic path's (same forward);
    dK, dV (the atomic kernel's own tile: another summation order) and dQ (fp32 atomics, then
    rounded to bf16) agree with the deterministic ones to bf16 rounding."""
    monkeypatch.setenv("KERNELS_BACKEND", "auto")
    g = torch.Generator(device="cuda").manual_seed(T * D)
    q, k, v, do = (torch.randn(2, 3, T, D, generator=g, device="cuda").to(BF16) for _ in range(4))
    exact = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=True)
    got = _fwd_bwd(attn_mod.attention, q, k, v, do, causal=True, deterministic=False)
    assert torch.equal(got[0], exact[0])
    for name, i in (("dq", 1), ("dk", 2), ("dv", 3)):
        assert torch.isfinite(got[i]).all(), name
        rel = ((got[i].float() - exact[i].float()).abs().max() / exact[i].float().abs().max()).item()
        assert rel < 2e-2, f"{name}: {rel:.3g}"
