#!/usr/bin/env bash
# The GPU suite (../shared/GPU.md): build, CUDA correctness tests, kernel benchmarks and a GPT-2 124M
# training throughput comparison, in one run of under 8 minutes on one H100/H200, summary table last.
#
#   bash bench/gpu_suite.sh             # results under $OUT, or bench/results/gpu-<GPU name>-<utc time>/
#   bash bench/gpu_suite.sh --dry-run   # print the plan (each command and its time limit), run nothing
#   bash bench/gpu_suite.sh --quick     # ~4 minutes: quick kernel shapes, 20 s training runs
#   bash bench/gpu_suite.sh --pack      # leave only summary.txt + results.tar.gz (of everything)
#   bash bench/gpu_suite.sh --full-kernels  # every kernel shape (~2 min more; the default runs the
#                                           # target shapes only: bench.kernels --quick)
#
# Every step runs under its own time limit, its output goes to <out>/<step>.log, and its failure is
# recorded without stopping the suite, so the summary is always printed. The training runs get the
# time that is left of the overall budget (SUITE_BUDGET_S, default 470 s), at most 60 s each.
# SUITE_SKIP="build kernels" leaves steps out (e.g. to check the script's own logic on a CPU machine);
# PYTHON picks the interpreter (default: python).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0 QUICK=0 PACK=0 FULL_KERNELS=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --quick) QUICK=1 ;;
    --pack) PACK=1 ;;
    --full-kernels) FULL_KERNELS=1 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $arg (use --dry-run, --quick, --pack, --full-kernels or --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python}
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')
RESULTS=${OUT:-bench/results/gpu-${GPU_NAME:-unknown}-$(date -u +%Y%m%d-%H%M%S)}
BUDGET=${SUITE_BUDGET_S:-470}
[ "$DRY" = 1 ] || mkdir -p "$RESULTS"
START=$(date +%s)
STEPS=()   # "name|status|seconds"

elapsed() { echo $(( $(date +%s) - START )); }

# run_step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to <out>/NAME.log, record the status
run_step() {
  local name=$1 limit=$2
  shift 2
  case " ${SUITE_SKIP:-} " in
    *" $name "*) echo "[skip] $name (SUITE_SKIP)"; STEPS+=("$name|skipped (SUITE_SKIP)|0"); return 0 ;;
  esac
  if [ "$DRY" = 1 ]; then
    echo "[dry-run] $name (limit ${limit}s): $*"
    STEPS+=("$name|dry-run|0")
    return 0
  fi
  echo "== $name (limit ${limit}s): $*"
  local t0 rc status
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT after ${limit}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  STEPS+=("$name|$status|$(( $(date +%s) - t0 ))")
  echo "   $status in $(( $(date +%s) - t0 ))s; last lines of $RESULTS/$name.log:"
  tail -n 5 "$RESULTS/$name.log" | sed 's/^/   | /'
  return 0
}

# 1. the machine and the software
run_step env 30 bash -c "nvidia-smi -L; r=\$?; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; \
  $PY -c 'import sys, torch, triton; print(\"python\", sys.version.split()[0]); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda); print(\"triton\", triton.__version__); print(\"gpu\", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'; exit \$r"

# 2. build the C++ tokenizer extension, offline (no datasets, no network on the GPU machine)
run_step build 150 $PY -m pip install --no-build-isolation --no-deps -e .

# 3. CUDA correctness: every kernel forward and backward in bf16/fp16/fp32 against the reference
run_step cuda_tests 120 $PY -m pytest -m cuda -x -q -p no:cacheprovider

# 4. kernel benchmarks (ours / naive reference / PyTorch op / torch.compile(reference); card limits)
#    The default measures the issues' target shapes (bench.kernels --quick: LayerNorm 16384 x 768/4096,
#    linear CE 16384 x 768 x 50304, attention T=1024/4096 D=64/128); --full-kernels sweeps every shape.
if [ "$FULL_KERNELS" = 1 ]; then
  run_step kernels 300 $PY -m bench.kernels --out "$RESULTS/kernels"
else
  run_step kernels 150 $PY -m bench.kernels --quick --out "$RESULTS/kernels"
fi

# 5. GPT-2 124M, T=1024, bf16, compiled: our kernels vs plain PyTorch, same card, one after the other.
#    Each run trains SECONDS_PER_RUN after its first step; start-up and torch.compile (~60-90 s per run,
#    RUN_OVERHEAD) come on top, so the runs get what the budget has left, at most 60 s each.
RUN_OVERHEAD=${RUN_OVERHEAD_S:-90}
LEFT=$(( BUDGET - $(elapsed) ))
SECONDS_PER_RUN=$(( (LEFT - 2 * RUN_OVERHEAD) / 2 ))
[ "$SECONDS_PER_RUN" -gt 60 ] && SECONDS_PER_RUN=60
[ "$QUICK" = 1 ] && [ "$SECONDS_PER_RUN" -gt 20 ] && SECONDS_PER_RUN=20
[ "$DRY" = 1 ] && SECONDS_PER_RUN=60
if [ "$SECONDS_PER_RUN" -lt 10 ]; then
  STEPS+=("train|SKIPPED: ${LEFT}s left of ${BUDGET}s|0")
else
  LIMIT=$(( 2 * (SECONDS_PER_RUN + RUN_OVERHEAD) + 20 ))
  [ "$LEFT" -gt "$LIMIT" ] && LIMIT=$LEFT
  run_step train "$LIMIT" $PY -m bench.train --config gpt2-124m \
    --synthetic --seconds "$SECONDS_PER_RUN" --skip-logs 2 --log-interval 20 \
    --startup-timeout $(( RUN_OVERHEAD + 60 )) --variants ours+compile torch+compile \
    --set train.batch_size=16 train.grad_accum=1 --out "$RESULTS/train"
fi

# 6. the summary, last
{
  echo
  echo "==================== GPU suite summary ($(elapsed)s, results in $RESULTS) ===================="
  [ -f "$RESULTS/env.log" ] && grep -E '^(GPU [0-9]|python|torch|triton|gpu) ' "$RESULTS/env.log"
  printf '%-12s %-44s %8s\n' step status seconds
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name status secs <<<"$s"
    printf '%-12s %-44s %8s\n' "$name" "$status" "$secs"
  done
  if [ -f "$RESULTS/cuda_tests.log" ]; then
    echo; echo "-- CUDA tests:"; grep -E '(passed|failed|error|skipped)' "$RESULTS/cuda_tests.log" | tail -n 3
  fi
  if [ -f "$RESULTS/kernels.log" ]; then
    echo; echo "-- kernels (the harness's own summary, last lines):"; tail -n 30 "$RESULTS/kernels.log"
  fi
  if [ -f "$RESULTS/train.log" ]; then
    echo; echo "-- training throughput:"; sed -n '/^training throughput:/,$p' "$RESULTS/train.log"
  fi
} | if [ "$DRY" = 1 ]; then cat; else tee "$RESULTS/summary.txt"; fi

if [ "$PACK" = 1 ] && [ "$DRY" = 0 ]; then
  PACKED=$(mktemp /tmp/gpu-suite-XXXXXX.tar.gz)
  if tar -czf "$PACKED" -C "$RESULTS" --exclude results.tar.gz . && mv "$PACKED" "$RESULTS/results.tar.gz"; then
    # leave two files (a device runner may fetch only a few): the summary and the archive of everything
    find "$RESULTS" -mindepth 1 -maxdepth 1 ! -name results.tar.gz ! -name summary.txt -exec rm -rf {} +
    echo "packed: $RESULTS/results.tar.gz (+ summary.txt)"
  fi
fi
FAILED=0
for s in "${STEPS[@]}"; do
  case "$s" in *"|ok|"*|*"|dry-run|"*|*"|skipped (SUITE_SKIP)|"*) ;; *) FAILED=1 ;; esac
done
exit $FAILED
