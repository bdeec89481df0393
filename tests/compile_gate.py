"""Compile gate: prove a Triton kernel compiles for a real GPU (sm_80, sm_90) without having one.

Triton can compile for any NVIDIA target on a CPU-only machine: `triton.compile(ASTSource(...),
target=GPUTarget("cuda", cc, 32))` runs the whole pipeline (TTIR -> TTGIR -> LLVM -> PTX -> ptxas ->
cubin). `cuobjdump --dump-resource-usage` on the cubin then tells us what the GPU would see: registers
per thread, LOCAL and STACK bytes (current ptxas puts register spills in the stack frame, so both
count as spills here) and static shared memory; Triton reports the dynamic shared memory it requests
at launch in `metadata.shared`.

API (used by tests/test_*.py and by other kernels' tests):

    usage = compile_for(kernel, signature, constexprs, num_warps=4, num_stages=2, cc=90)
    assert_fits(usage)                      # no spills, shared memory and registers within the card
    usages = compile_many([CompileSpec(...), ...])   # many configs, one worker process
    check_all(specs)                        # compile_many + assert_fits, returns the usages

`signature` maps every runtime argument name to a Triton type string ("*fp32", "*bf16", "i32",
"i64", "fp32"); `constexprs` maps each tl.constexpr argument to its value (they are added to the
signature as "constexpr", the form triton 3.3+ expects; verified on triton 3.9, and triton 3.6's
ASTSource has the same (fn, signature, constexprs, attrs) constructor). `divisible_by_16` names the
pointer/int arguments the real launch would see as multiples of 16 (Triton's JIT specialises on
that, which enables vectorised loads; pass the ones a typical launch has so the gate compiles the
code that will really run).

Which compiler the gate judges. The gate exists to protect the GPU machine, whose triton is 3.6
(DESIGN.md); it judges the code of the triton installed where it runs, and that verdict stands
for 3.6 on the versions whose code for these kernels was checked against 3.6: 3.6 itself and 3.9
(CI's; every gated configuration gave the same spill verdict on both, commit 0c3cf55). A spill is
a per-thread LOCAL or STACK byte in cuobjdump's resource usage (ptxas -v reports the same bytes as
"spill stores" for every spill this gate has seen; a Triton kernel calls no functions, so it has
no other use for a stack frame). Triton 3.8 (what pip installs beside torch 2.14.1) generates
different code for two configurations that 3.6 and 3.9 compile without spills:
KNOWN_SPILLS lists them with the bytes ptxas 12.9 reported, and they are accepted on 3.8 only, so
any other spill, or more bytes, still fails there. A version in neither list (3.7, 3.10, ...) is
judged like 3.9: no spill anywhere.

Under TRITON_INTERPRET=1 (how CI runs every test) `@triton.jit` returns an interpreter object that
cannot be compiled, and the interpreter patches `triton.language` in-process. So when interpreting,
the compile runs in a fresh worker process without TRITON_INTERPRET (`python -m tests.compile_gate
--worker`), which re-imports the kernel by module and name: kernels must be module-level globals.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Largest shared memory one block may use (opt-in maximum), bytes, per compute capability.
# A100 (sm_80): 163 KB; H100/H200 (sm_90): 227 KB; consumer Ampere/Ada (sm_86/89): 99 KB.
SHARED_MEMORY_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}
REGISTERS_PER_SM = 65536  # 64K 32-bit registers per SM on sm_80 and sm_90
MAX_REGISTERS_PER_THREAD = 255
GATE_TARGETS = (80, 90)
# The versions whose verdict stands for the GPU machine's triton 3.6 (see the module doc).
JUDGES_FOR_3_6 = ((3, 6), (3, 9))
# (major, minor) -> {(kernel, a "NAME=value" its constexprs contain, cc, num_warps): spill bytes}
# measured with that version's compiler (ptxas 12.9: "40 bytes spill stores" and "4 bytes spill
# stores" in an 8-byte frame) that 3.6 and 3.9 do not have. Accepted on that version only.
KNOWN_SPILLS = {
    (3, 8): {
        ("_layer_norm_fwd_kernel", "BLOCK_N=16384", 90, 16): 40,
        ("_cross_entropy_kernel", "BLOCK_V=4096", 90, 8): 8,
        # the fp32 atomic-dQ backward (D=128, 16x32 tile): 8 B on 3.8 (seen in a fresh venv with torch 2.14.1)
        ("_attn_bwd_dkdv_atomic_dq", "DOT_PRECISION=ieee", 90, 8): 8,
    },
}


def triton_version() -> tuple[int, int]:
    """(major, minor) of the installed triton."""
    import triton

    major, minor = (int(re.match(r"\d+", p).group()) for p in triton.__version__.split(".")[:2])
    return major, minor


def known_spill_bytes(usage: "ResourceUsage", version: tuple[int, int] | None = None) -> int:
    """Spill bytes KNOWN_SPILLS accepts for `usage` on `version` (default: the installed one)."""
    known = KNOWN_SPILLS.get(version or triton_version(), {})
    for (kernel, constexpr, cc, warps), nbytes in known.items():
        if (usage.kernel == kernel and usage.cc == cc and usage.num_warps == warps
                and constexpr in usage.constexprs.split(",")):
            return nbytes
    return 0


@dataclasses.dataclass(frozen=True)
class CompileSpec:
    """One kernel configuration to compile: what a launch would specialise on."""
    kernel: object                       # a @triton.jit function (module-level global)
    signature: dict                      # runtime arg name -> Triton type string
    constexprs: dict = dataclasses.field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 2
    cc: int = 90
    divisible_by_16: tuple = ()


@dataclasses.dataclass(frozen=True)
class ResourceUsage:
    """What one compiled kernel needs from the GPU (from cuobjdump and Triton's metadata)."""
    kernel: str
    cc: int
    num_warps: int
    num_stages: int
    registers: int          # per thread
    local_bytes: int        # LOCAL: local memory per thread outside the stack frame
    stack_bytes: int        # STACK: the per-thread stack frame, where current ptxas puts spills
    static_shared_bytes: int
    dynamic_shared_bytes: int  # requested by Triton at launch
    constexprs: str = ""

    @property
    def spill_bytes(self) -> int:
        """Per-thread local memory (LOCAL + STACK). A Triton kernel calls no functions, so any
        stack frame is register spill: a kernel that obviously spills (a 64x128 fp32 tile in one
        warp) shows STACK > 0 and LOCAL = 0 with triton 3.9's ptxas."""
        return self.local_bytes + self.stack_bytes

    @property
    def shared_bytes(self) -> int:
        return self.static_shared_bytes + self.dynamic_shared_bytes

    def __str__(self) -> str:
        return (f"{self.kernel}[{self.constexprs}] sm_{self.cc} warps={self.num_warps} "
                f"stages={self.num_stages}: {self.registers} regs, {self.spill_bytes} B spill "
                f"(local+stack), {self.shared_bytes} B shared")


def cuobjdump_path() -> str | None:
    """Triton ships cuobjdump next to its ptxas; fall back to one on PATH."""
    try:
        import triton
    except ImportError:
        return None
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if bundled.is_file():
        return str(bundled)
    return shutil.which("cuobjdump")


def available() -> tuple[bool, str]:
    """(True, "") when the gate can run here; else (False, why) for a pytest skip reason."""
    try:
        import triton  # noqa: F401
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the install
        return False, f"triton's compiler is not importable: {e}"
    if cuobjdump_path() is None:
        return False, "cuobjdump not found (triton's backends/nvidia/bin or PATH)"
    return True, ""


_RESOURCE_LINE = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")


def parse_resource_usage(text: str) -> dict:
    """Parse `cuobjdump --dump-resource-usage` output: {function name: (REG, STACK, SHARED, LOCAL)}."""
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Function\s+(\S+):", line)
        if m:
            name = m.group(1)
            continue
        m = _RESOURCE_LINE.search(line)
        if m and name is not None:
            out[name] = tuple(int(g) for g in m.groups())
    return out


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _python_fn(kernel):
    """The plain Python function behind a JITFunction or an InterpretedFunction."""
    fn = getattr(kernel, "fn", None)
    if fn is None:
        raise TypeError(f"{kernel!r} is not a @triton.jit function")
    return fn


def _compile_in_process(spec: CompileSpec) -> ResourceUsage:
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = spec.kernel
    arg_names = list(kernel.arg_names)
    signature = dict(spec.signature)
    for name in spec.constexprs:
        signature[name] = "constexpr"
    missing = [a for a in arg_names if a not in signature]
    if missing:
        raise ValueError(f"{kernel.__name__}: signature lacks arguments {missing}")
    attrs = {(arg_names.index(a),): [["tt.divisibility", 16]] for a in spec.divisible_by_16}
    src = ASTSource(fn=kernel, signature=signature, constexprs=dict(spec.constexprs), attrs=attrs)
    compiled = triton.compile(src, target=GPUTarget("cuda", spec.cc, 32),
                              options={"num_warps": spec.num_warps, "num_stages": spec.num_stages})
    with tempfile.TemporaryDirectory() as d:
        cubin = Path(d) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        res = subprocess.run([cuobjdump_path(), "--dump-resource-usage", str(cubin)],
                             capture_output=True, text=True, check=True)
    table = parse_resource_usage(res.stdout)
    if not table:
        raise RuntimeError(f"could not parse cuobjdump output:\n{res.stdout}\n{res.stderr}")
    # One entry function per cubin (the kernel); take it by name when possible.
    regs, stack, shared, local = table.get(compiled.metadata.name, next(iter(table.values())))
    return ResourceUsage(
        kernel=kernel.__name__, cc=spec.cc, num_warps=spec.num_warps, num_stages=spec.num_stages,
        registers=regs, local_bytes=local, stack_bytes=stack, static_shared_bytes=shared,
        dynamic_shared_bytes=int(compiled.metadata.shared),
        constexprs=",".join(f"{k}={v}" for k, v in spec.constexprs.items()))


def _spec_to_json(spec: CompileSpec) -> dict:
    fn = _python_fn(spec.kernel)
    d = dataclasses.asdict(dataclasses.replace(spec, kernel=None))
    d["kernel"] = [fn.__module__, fn.__name__]
    d["divisible_by_16"] = list(spec.divisible_by_16)
    return d


def _compile_in_worker(specs: list[CompileSpec]) -> list[ResourceUsage]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silences triton 3.9's warning; 1 = its default
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    payload = json.dumps([_spec_to_json(s) for s in specs])
    res = subprocess.run([sys.executable, "-m", "tests.compile_gate", "--worker"], input=payload,
                         capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"compile worker failed:\n{res.stderr[-4000:]}")
    return [ResourceUsage(**u) for u in json.loads(res.stdout.strip().splitlines()[-1])]


def compile_many(specs) -> list[ResourceUsage]:
    """Compile every spec (in a worker process when TRITON_INTERPRET is set); one usage per spec."""
    specs = list(specs)
    if _interpreting() or not all(hasattr(s.kernel, "cache_key") for s in specs):
        return _compile_in_worker(specs)
    return [_compile_in_process(s) for s in specs]


def compile_for(kernel, signature: dict, constexprs: dict | None = None, num_warps: int = 4,
                num_stages: int = 2, cc: int = 90, divisible_by_16=()) -> ResourceUsage:
    """Compile one configuration of `kernel` for sm_`cc` and return its resource usage."""
    spec = CompileSpec(kernel, dict(signature), dict(constexprs or {}), num_warps, num_stages, cc,
                       tuple(divisible_by_16))
    return compile_many([spec])[0]


def fit_problems(usage: ResourceUsage, version: tuple[int, int] | None = None) -> list[str]:
    """Why this configuration would be slow or fail to launch on its card ([] when it fits), as
    compiled by triton `version` (default: the installed one; see KNOWN_SPILLS)."""
    problems = []
    if usage.spill_bytes > known_spill_bytes(usage, version):
        problems.append(f"spills {usage.spill_bytes} B per thread to local memory "
                        f"(LOCAL {usage.local_bytes} + STACK {usage.stack_bytes})")
    limit = SHARED_MEMORY_LIMIT.get(usage.cc)
    if limit is not None and usage.shared_bytes > limit:
        problems.append(f"needs {usage.shared_bytes} B shared memory > {limit} B on sm_{usage.cc}")
    if usage.registers > MAX_REGISTERS_PER_THREAD:
        problems.append(f"{usage.registers} registers per thread > {MAX_REGISTERS_PER_THREAD}")
    if usage.registers * 32 * usage.num_warps > REGISTERS_PER_SM:
        problems.append(f"{usage.registers} regs x {32 * usage.num_warps} threads > "
                        f"{REGISTERS_PER_SM} registers per SM: the block cannot launch")
    return problems


def assert_fits(usage: ResourceUsage, cc: int | None = None) -> None:
    """AssertionError naming the problem when `usage` spills or exceeds the card's limits."""
    if cc is not None and cc != usage.cc:
        raise AssertionError(f"usage was compiled for sm_{usage.cc}, not sm_{cc}")
    problems = fit_problems(usage)
    assert not problems, f"{usage}: " + "; ".join(problems)


def check_all(specs, ccs=GATE_TARGETS) -> list[ResourceUsage]:
    """Compile every spec for every cc in `ccs` (one worker), assert each fits; return the usages."""
    expanded = [dataclasses.replace(s, cc=cc) for s in specs for cc in ccs]
    usages = compile_many(expanded)
    failures = [f"{u}: " + "; ".join(p) for u in usages if (p := fit_problems(u))]
    assert not failures, "compile gate failed:\n" + "\n".join(failures)
    return usages


def _worker_main() -> None:
    import importlib

    specs = []
    for d in json.loads(sys.stdin.read()):
        module, name = d.pop("kernel")
        kernel = getattr(importlib.import_module(module), name)
        d["divisible_by_16"] = tuple(d["divisible_by_16"])
        specs.append(CompileSpec(kernel=kernel, **d))
    usages = [_compile_in_process(s) for s in specs]
    sys.stdout.write("\n" + json.dumps([dataclasses.asdict(u) for u in usages]) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker_main()
    else:
        print(__doc__)
