#!/usr/bin/env bash
# The GPU suite (../shared/GPU.md): build, CUDA correctness tests, the attention sweep (its winners
# written as a decisions file), kernel benchmarks, a GPT-2 124M training comparison and the compiled
# model's graph breaks, in one run of under 8 minutes on one H100/H200, summary table last.
#
#   bash bench/gpu_suite.sh             # results under $OUT, or bench/results/gpu-<GPU name>-<utc time>/
#   bash bench/gpu_suite.sh --dry-run   # print the plan (each step and its time limit), run nothing
#   bash bench/gpu_suite.sh --pack      # leave summary.txt, tuned.json and results.tar.gz (of everything)
#   bash bench/gpu_suite.sh --quick     # shorter sweep and training runs
#   bash bench/gpu_suite.sh --full-kernels  # every kernel shape (the default: the target shapes)
#
# Steps (each under its own time limit, output in <out>/<step>.log; a failure or time-out is recorded
# and the suite goes on, so the summary always comes; every limit is also cut to the overall deadline,
# SUITE_BUDGET_S, default 480 s):
#   1 env       GPU, driver, python/torch/triton/cuDNN versions
#   2 prepare   side by side (CPU-bound compiles, 16 cores): the C++ extension build (offline); the
#               CUDA tests in 5 pytest processes (each fails when torch sees no GPU or a test skips);
#               the attention sweep's kernels compiled into Triton's cache; torch._dynamo.explain
#               of GPT-2 124M (graph breaks); a short torch.compile warm-up of both training
#               variants (fills Inductor's cache, niced)
#   3 sweep     the attention variants timed (launch orders, tiles); winners -> <out>/tuned.json;
#               when a decision changed, the CUDA attention tests again with it (tuned_check); a
#               decision that fails them is not applied (renamed tuned.rejected.json)
#   4 kernels   target shapes with the winners: ours / reference / SDPA (default + each backend
#               pinned) / torch.compile(reference); card copy bandwidth and bf16 matmul rate
#   4b profile  where the time goes (bench.profile_gpu, torch.profiler): LayerNorm fwd+bwd, then
#               GPT-2 124M steps eager and compiled, ours vs PyTorch: wall, host and GPU kernel time
#   5 train     GPT-2 124M T=1024 bf16 compiled, our kernels (with the winners) vs plain PyTorch
#               with the fastest SDPA backend step 4 found; tokens/s and MFU
#   6 summary   printed last (and <out>/summary.txt)
# Apply the decisions: cp <out>/tuned.json kernels/tuned.json (and commit it with the results).
# SUITE_SKIP="build kernels" leaves steps out; PYTHON picks the interpreter (default: python).
set -uo pipefail
cd "$(dirname "$0")/.."

# internal: --after-build RC_FILE COMMAND... waits until the build step has written RC_FILE, then runs
if [ "${1:-}" = "--after-build" ]; then
  while [ ! -f "$2" ]; do sleep 1; done
  shift 2
  exec "$@"
fi

# internal: --cuda-pytest PYTHON -m pytest ARGS... runs the CUDA tests and fails when they cannot have
# run: torch sees no GPU (every test would skip and pytest would say ok), or any test skipped.
if [ "${1:-}" = "--cuda-pytest" ]; then
  shift
  "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "error: torch.cuda.is_available() is False in $1: the cuda tests cannot run"; exit 3; }
  log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if grep -qE '^=+ .*[0-9]+ skipped' "$log"; then
    echo "error: cuda tests were skipped (see SKIPPED above): every one must run on the GPU machine"
    [ "$rc" = 0 ] && rc=4
  fi
  rm -f "$log"
  exit "$rc"
fi

DRY=0 QUICK=0 PACK=0 FULL_KERNELS=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --quick) QUICK=1 ;;
    --pack) PACK=1 ;;
    --full-kernels) FULL_KERNELS=1 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $arg (use --dry-run, --quick, --pack, --full-kernels or --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python}
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')
RESULTS=${OUT:-bench/results/gpu-${GPU_NAME:-unknown}-$(date -u +%Y%m%d-%H%M%S)}
[ "$DRY" = 1 ] || { mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd); }
BUDGET=${SUITE_BUDGET_S:-480}
START=$(date +%s)
DEADLINE=$(( START + BUDGET ))
STEPS=()      # "name|status|seconds"
PLANNED=0     # dry-run: sum of the sequential limits
export TRITON_DEFAULT_FP_FUSION=${TRITON_DEFAULT_FP_FUSION:-1}  # triton 3.9 warns when unset; 1 = its default

# Time limits, seconds. The cold-cache costs they allow for: the CUDA tests compile ~50 attention
# specialisations plus the LayerNorm/cross-entropy kernels and two torch.compile tests (split over
# 4 processes); the build is ~30-60 s; the sweep warm-up compiles ~40 kernel configs in 4 processes.
LIM_ENV=20
LIM_PREPARE=175       # the whole parallel group (each member has its own limit below, all <= this)
LIM_BUILD=150 LIM_TESTS=175 LIM_WARM=170 LIM_EXPLAIN=120 LIM_TRAIN_WARM=175
LIM_SWEEP=45 SWEEP_BUDGET=35
LIM_TUNED_CHECK=50    # only when the sweep changed a decision and >= TUNED_CHECK_MIN_LEFT s are left
TUNED_CHECK_MIN_LEFT=230
LIM_KERNELS=100 KERNELS_BUDGET=70
LIM_PROFILE=100      # LayerNorm + eager steps ~30 s; the compiled steps reuse the train warm-up's Inductor cache
[ "$QUICK" = 1 ] && { LIM_SWEEP=40; SWEEP_BUDGET=25; }
[ "$FULL_KERNELS" = 1 ] && { LIM_KERNELS=200; KERNELS_BUDGET=170; }
TRAIN_MIN=60          # the training step gets what is left of the budget, at least this much
TRAIN_MAX_SECONDS=30  # measured seconds per training run (after compile and warm-up), at most
[ "$QUICK" = 1 ] && TRAIN_MAX_SECONDS=15
RUN_OVERHEAD=${RUN_OVERHEAD_S:-45}  # start-up + torch.compile per training run (warm Inductor cache)

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( DEADLINE - $(date +%s) )); }
skipped() { case " ${SUITE_SKIP:-} " in *" $1 "*) return 0 ;; esac; return 1; }

# clip LIMIT: the limit cut to what is left before the deadline (at least 5 s)
clip() { local l=$1 r; r=$(left); [ "$r" -lt "$l" ] && l=$r; [ "$l" -lt 5 ] && l=5; echo "$l"; }

# run_step NAME LIMIT COMMAND...: run in the foreground with a time limit, log to <out>/NAME.log
run_step() {
  local name=$1 limit=$2
  shift 2
  if skipped "$name"; then echo "[skip] $name (SUITE_SKIP)"; STEPS+=("$name|skipped (SUITE_SKIP)|0"); return 0; fi
  if [ "$DRY" = 1 ]; then
    echo "[dry-run] $name (limit ${limit}s): $*"
    PLANNED=$(( PLANNED + limit ))
    STEPS+=("$name|dry-run|0")
    return 0
  fi
  limit=$(clip "$limit")
  echo "== $name (limit ${limit}s, $(elapsed)s elapsed): $*"
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

# bg_step NAME LIMIT COMMAND...: the same, in the background (a member of the prepare group)
BG=()
bg_step() {
  local name=$1 limit=$2
  shift 2
  if skipped "$name"; then STEPS+=("$name|skipped (SUITE_SKIP)|0"); return 0; fi
  if [ "$DRY" = 1 ]; then
    echo "[dry-run]   | $name (limit ${limit}s, in parallel): $*"
    STEPS+=("$name|dry-run|0")
    return 0
  fi
  limit=$(clip "$limit")
  echo "== $name (limit ${limit}s, in the background): $*"
  (
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
    echo "$? $(( $(date +%s) - t0 )) $limit" >"$RESULTS/$name.rc"
  ) &
  BG+=("$name")
}

# wait_group: wait for the background steps and record each one's status
wait_group() {
  [ "$DRY" = 1 ] && return 0
  wait
  local name rc secs limit status
  for name in "${BG[@]}"; do
    read -r rc secs limit <"$RESULTS/$name.rc" 2>/dev/null || { rc=255; secs=0; limit=0; }
    rm -f "$RESULTS/$name.rc"
    case $rc in
      0) status=ok ;;
      124|137) status="TIMEOUT after ${limit}s" ;;
      *) status="FAILED (exit $rc)" ;;
    esac
    STEPS+=("$name|$status|$secs")
    echo "   $name: $status in ${secs}s; last lines:"
    tail -n 3 "$RESULTS/$name.log" | sed 's/^/   | /'
  done
  BG=()
}

# The CUDA test files, split in 4 processes by expected compile cost. Only files that hold `cuda`
# tests are collected, so a module needing a package the GPU machine lacks cannot stop the rest.
CUDA_FILES=$(grep -l "mark.cuda" tests/test_*.py 2>/dev/null | tr '\n' ' ')
ATTN_FILES=$(for f in $CUDA_FILES; do case $f in *attention*) echo -n "$f " ;; esac; done)
KERNEL_FILES=$(for f in $CUDA_FILES; do case $f in *layernorm*|*cross_entropy*) echo -n "$f " ;; esac; done)
OTHER_FILES=$(for f in $CUDA_FILES; do case $f in *attention*|*layernorm*|*cross_entropy*) ;; *) echo -n "$f " ;; esac; done)
# -v: every test's result is in the log as it finishes, so a step cut by its time limit still says
# which tests passed; -rs lists skips, and --cuda-pytest fails the step on any skip or without CUDA
PYTEST=(bash bench/gpu_suite.sh --cuda-pytest $PY -m pytest -m cuda -v -p no:cacheprovider -rfEs --durations=5
        --continue-on-collection-errors)

# ---------------------------------------------------------------------------------------------------
# 1. the machine and the software
run_step env $LIM_ENV bash -c "nvidia-smi -L; r=\$?; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; \
  $PY -c 'import sys, torch, triton; print(\"python\", sys.version.split()[0]); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda); print(\"triton\", triton.__version__); print(\"cudnn\", torch.backends.cudnn.version()); print(\"gpu\", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None)'; exit \$r"

# 2. prepare, side by side
[ "$DRY" = 1 ] && { echo "[dry-run] prepare (limit ${LIM_PREPARE}s for the group; members in parallel):"; PLANNED=$(( PLANNED + LIM_PREPARE )); }
bg_step build $LIM_BUILD $PY -m pip install --no-build-isolation --no-deps -e .
[ -n "$ATTN_FILES" ] && bg_step cuda_attention_d128 $LIM_TESTS "${PYTEST[@]}" -k "d128" $ATTN_FILES
[ -n "$ATTN_FILES" ] && bg_step cuda_attention_d64 $LIM_TESTS "${PYTEST[@]}" -k "d64 and not d128" $ATTN_FILES
[ -n "$ATTN_FILES" ] && bg_step cuda_attention_rest $LIM_TESTS "${PYTEST[@]}" -k "not d128 and not d64" $ATTN_FILES
[ -n "$KERNEL_FILES" ] && bg_step cuda_kernels $LIM_TESTS "${PYTEST[@]}" $KERNEL_FILES
bg_step sweep_warm $LIM_WARM $PY -m bench.attention_cases --warm --jobs 4
bg_step explain $LIM_EXPLAIN $PY -m bench.explain --json "$RESULTS/explain.json"
# The trainer imports the tokenizer's C++ extension (train/checkpoint.py -> gpt.tokenizer -> gpt._bpe):
# these steps start when the build has ended (their limits include the wait).
AFTER_BUILD=(bash bench/gpu_suite.sh --after-build "$RESULTS/build.rc")
skipped build && AFTER_BUILD=()
[ -n "$OTHER_FILES" ] && bg_step cuda_other $LIM_TESTS "${AFTER_BUILD[@]}" "${PYTEST[@]}" $OTHER_FILES
# Fills Inductor's and Triton's caches for the training step (niced: the tests come first). Its own
# numbers are thrown away.
for v in ours torch; do
  bg_step train_warm_$v $LIM_TRAIN_WARM "${AFTER_BUILD[@]}" nice -n 10 $PY -m bench.train --config gpt2-124m --synthetic \
    --seconds 3 --skip-logs 0 --log-interval 5 --startup-timeout $(( LIM_TRAIN_WARM - 10 )) \
    --variants $v+compile --set train.batch_size=16 train.grad_accum=1 --out /tmp/gpu-suite-train-warm-$v
done
wait_group

# 3. the attention sweep: launch orders and tiles timed at T=4096, D=128 then 64; winners -> tuned.json
run_step sweep $LIM_SWEEP $PY -m bench.attention_cases --sweep --budget-s $SWEEP_BUDGET \
  --write-tuned "$RESULTS/tuned.json" --json "$RESULTS/sweep.json"
TUNED_ENV=()
[ -f "$RESULTS/tuned.json" ] && TUNED_ENV=(env "KERNELS_TUNED=$RESULTS/tuned.json")

# 3b. when the sweep changed a decision: the CUDA attention tests (bf16/fp16, ragged shapes
#     included) again, with the decisions file in force, before anything is measured with it
if [ "$DRY" = 1 ]; then
  run_step tuned_check $LIM_TUNED_CHECK env KERNELS_TUNED="$RESULTS/tuned.json" "${PYTEST[@]}" \
    -k "cuda_matches_reference and (bfloat16 or float16) and (d128 or d64)" $ATTN_FILES
elif [ -f "$RESULTS/tuned_changed" ] && [ "$(left)" -ge "$TUNED_CHECK_MIN_LEFT" ]; then
  run_step tuned_check $LIM_TUNED_CHECK "${TUNED_ENV[@]}" "${PYTEST[@]}" \
    -k "cuda_matches_reference and (bfloat16 or float16) and (d128 or d64)" $ATTN_FILES
  if ! grep -q "|ok|" <<<"${STEPS[-1]}"; then
    # a decision that fails (or cannot finish) the tests is not applied: measure with the table
    mv "$RESULTS/tuned.json" "$RESULTS/tuned.rejected.json"
    TUNED_ENV=()
    echo "   tuned_check did not pass: the decisions are NOT applied (kept as tuned.rejected.json)"
  fi
elif [ -f "$RESULTS/tuned_changed" ]; then
  STEPS+=("tuned_check|SKIPPED: $(left)s left (decisions untested on ragged shapes)|0")
fi

# 4. kernel benchmarks at the target shapes, with the winners; attention first (this run's focus)
KOPS=attention,layernorm,linear_cross_entropy,cross_entropy
if [ "$FULL_KERNELS" = 1 ]; then
  run_step kernels $LIM_KERNELS "${TUNED_ENV[@]}" $PY -m bench.kernels --op $KOPS --budget-s $KERNELS_BUDGET \
    --no-plots --out "$RESULTS/kernels"
else
  run_step kernels $LIM_KERNELS "${TUNED_ENV[@]}" $PY -m bench.kernels --quick --op $KOPS --budget-s $KERNELS_BUDGET \
    --no-plots --out "$RESULTS/kernels"
fi

# 4b. where the time goes: kernel time against wall and host time (LayerNorm; a GPT-2 124M step)
run_step profile $LIM_PROFILE "${TUNED_ENV[@]}" $PY -m bench.profile_gpu --compile --out "$RESULTS/profile"

# 5. GPT-2 124M: our kernels (with the winners) vs plain PyTorch pinned to the fastest SDPA backend
BASELINE=torch+compile
if [ -f "$RESULTS/kernels/sdpa.json" ]; then
  PIN=$($PY -c "import json,sys; print(json.load(open(sys.argv[1])).get('training_baseline','default'))" \
        "$RESULTS/kernels/sdpa.json" 2>/dev/null)
  case "$PIN" in flash|cudnn|efficient) BASELINE="torch[$PIN]+compile" ;; esac
fi
if [ "$DRY" = 1 ]; then
  SECONDS_PER_RUN=$TRAIN_MAX_SECONDS
  LIMIT=$(( BUDGET - PLANNED ))
  [ "$LIMIT" -lt "$TRAIN_MIN" ] && LIMIT=$TRAIN_MIN
else
  LIMIT=$(left)
  SECONDS_PER_RUN=$(( (LIMIT - 10 - 2 * RUN_OVERHEAD) / 2 ))
  [ "$SECONDS_PER_RUN" -gt "$TRAIN_MAX_SECONDS" ] && SECONDS_PER_RUN=$TRAIN_MAX_SECONDS
fi
# Each run is killed by bench.train itself after SECONDS_PER_RUN + STARTUP seconds, so that two runs
# end inside the step's limit and a slow (cold) compile costs one run, not the step's whole output.
STARTUP=$(( (LIMIT - 10) / 2 - SECONDS_PER_RUN ))
[ "$STARTUP" -lt 20 ] && STARTUP=20
if [ "$SECONDS_PER_RUN" -lt 5 ]; then
  STEPS+=("train|SKIPPED: $(left)s left of ${BUDGET}s|0")
else
  run_step train "$LIMIT" "${TUNED_ENV[@]}" $PY -m bench.train --config gpt2-124m \
    --synthetic --seconds "$SECONDS_PER_RUN" --skip-logs 2 --log-interval 10 \
    --startup-timeout $STARTUP --variants ours+compile "$BASELINE" \
    --set train.batch_size=16 train.grad_accum=1 --out "$RESULTS/train"
fi

# 6. the summary, last
{
  echo
  echo "==================== GPU suite summary ($(elapsed)s of ${BUDGET}s, results in $RESULTS) ===================="
  [ -f "$RESULTS/env.log" ] && grep -E '^(GPU [0-9]|python|torch|triton|cudnn|gpu) ' "$RESULTS/env.log"
  printf '%-22s %-40s %8s\n' step status seconds
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name status secs <<<"$s"
    printf '%-22s %-40s %8s\n' "$name" "$status" "$secs"
  done
  [ "$DRY" = 1 ] && echo "total of the time limits: ${PLANNED}s (env + prepare group + sweep + kernels + train; budget ${BUDGET}s: every limit is also cut to the budget's deadline, and train gets what is left)"
  for t in cuda_attention_d128 cuda_attention_d64 cuda_attention_rest cuda_kernels cuda_other tuned_check; do
    [ -f "$RESULTS/$t.log" ] || continue
    echo; echo "-- $t: $(grep -c ' PASSED' "$RESULTS/$t.log") passed, $(grep -c ' FAILED' "$RESULTS/$t.log") failed, $(grep -c ' ERROR' "$RESULTS/$t.log") errors so far"
    grep -E '^(FAILED|ERROR) |(passed|failed|error|skipped|deselected).* in [0-9.]+s' "$RESULTS/$t.log" | tail -n 12
  done
  if [ -f "$RESULTS/explain.log" ]; then
    echo; echo "-- graph breaks (torch._dynamo.explain):"; grep -E '^(explain|  break)' "$RESULTS/explain.log" | head -n 20
  fi
  if [ -f "$RESULTS/sweep.log" ]; then
    echo; echo "-- attention sweep:"; grep -E '^(attention sweep|  D=|decisions|wrote|sweep done)' "$RESULTS/sweep.log"
  fi
  if [ -f "$RESULTS/tuned.json" ]; then
    echo; echo "-- decisions file (cp $RESULTS/tuned.json kernels/tuned.json to apply):"
    $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d.get('attention', {})))" "$RESULTS/tuned.json" 2>/dev/null
  fi
  if [ -f "$RESULTS/kernels.log" ]; then
    echo; echo "-- kernels (the harness's own summary):"; sed -n '/^card: /,$p' "$RESULTS/kernels.log" | tail -n 60
  fi
  if [ -f "$RESULTS/profile/profile.txt" ]; then
    echo; echo "-- where the time goes (bench.profile_gpu; every kernel in profile/profile.txt):"
    grep -v -E '^  +[0-9.]+ ms  x' "$RESULTS/profile/profile.txt" | grep -v '^  top kernels' | head -n 70
  fi
  if [ -f "$RESULTS/train.log" ]; then
    echo; echo "-- training throughput (baseline $BASELINE):"; sed -n '/^training throughput:/,$p' "$RESULTS/train.log"
  fi
} | if [ "$DRY" = 1 ]; then cat; else tee "$RESULTS/summary.txt"; fi

if [ "$PACK" = 1 ] && [ "$DRY" = 0 ]; then
  PACKED=$(mktemp /tmp/gpu-suite-XXXXXX.tar.gz)
  if tar -czf "$PACKED" -C "$RESULTS" --exclude results.tar.gz . && mv "$PACKED" "$RESULTS/results.tar.gz"; then
    # leave three small files (a device runner may fetch only a few): the summary, the decisions
    # file and the archive of everything
    find "$RESULTS" -mindepth 1 -maxdepth 1 ! -name results.tar.gz ! -name summary.txt ! -name tuned.json \
      -exec rm -rf {} +
    echo "packed: $RESULTS/results.tar.gz (+ summary.txt, tuned.json)"
  fi
fi
FAILED=0
for s in "${STEPS[@]}"; do
  case "$s" in *"|ok|"*|*"|dry-run|"*|*"|skipped (SUITE_SKIP)|"*) ;; train_warm*) ;; *) FAILED=1 ;; esac
done
exit $FAILED
