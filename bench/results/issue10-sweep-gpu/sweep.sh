#!/usr/bin/env bash
# Issue 10: which training settings make the main job's model generalise to held-out domains more reliably.
# The main job (configs/text2sql_cpu.json on 2000 synthetic databases x 15 questions, data seed 0) trained
# from 4 seeds per variant, all at once on one GPU (eager, bf16 autocast; the same config the CPU job runs),
# then every final checkpoint scored with constrained decoding on the data's two held-out splits (500
# questions each) by bench.decoding on the machine's CPU cores, 16 at a time.
#
#   bash bench/results/issue10-sweep-gpu/sweep.sh OUTDIR [STEPS_SCALE]
#
# Expects the prepared data (python -m text2sql.demo's, /tmp/demo-data-2k here) slimmed into .sweep/data:
# shards, tokenizer, meta.json, the two test splits' examples and their databases (what training and the
# scoring read); it is copied to /tmp/demo-data-2k, where the examples' database paths point.
# STEPS_SCALE (default 1) divides every step count: a CPU smoke test of this script uses 250.
set -u
cd "$(dirname "$0")/../../.."
OUTDIR=${1:?usage: sweep.sh OUTDIR [STEPS_SCALE]}
SCALE=${2:-1}
DEVICE=${SWEEP_DEVICE:-cuda}
SEEDS=${SWEEP_SEEDS:-"1 2 3 4"}
rm -rf /tmp/sweep  # a warm machine keeps the last call's runs: start clean
mkdir -p "$OUTDIR" /tmp/demo-data-2k /tmp/sweep/runs /tmp/sweep/evals
cp -r .sweep/data/. /tmp/demo-data-2k/
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
{ date -u; nvidia-smi -L 2>/dev/null; $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; git rev-parse HEAD 2>/dev/null; } > "$OUTDIR/env.txt" 2>&1

# Python packages the machine lacks (sqlglot, for scoring), carried as wheels in .whl/
if ls .whl/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
# the C++ tokenizer extension (gpt._bpe), built here as the GPU suite builds it
$PY -m pip install -q --no-build-isolation --no-deps -e . > "$OUTDIR/build.log" 2>&1 || { echo "build failed"; tail -20 "$OUTDIR/build.log"; exit 1; }

steps() { echo $(( $1 / SCALE > 1 ? $1 / SCALE : 2 )); }
S5=$(steps 5000); S65=$(steps 6500); S25=$(steps 2500)
declare -A VARIANT=(
  [base]=""
  [heads8]="model.n_head=8"
  [lr3e-3]="train.lr=3e-3 train.min_lr=3e-4"
  [dropout0.1]="model.dropout=0.1"
  [steps6500]="train.max_steps=$S65 train.lr_decay_steps=$S65"
  [batch16]="train.batch_size=16 train.max_steps=$S25 train.lr_decay_steps=$S25"
  [heads8-steps6500]="model.n_head=8 train.max_steps=$S65 train.lr_decay_steps=$S65"
)
# SWEEP_PLAN: "variant:seed,seed ..." (default: every variant of the first sweep with SEEDS)
PLAN=${SWEEP_PLAN:-}
if [ -z "$PLAN" ]; then
  for v in base heads8 lr3e-3 dropout0.1 steps6500 batch16; do PLAN="$PLAN $v:${SEEDS// /,}"; done
fi
RUNS=()
for item in $PLAN; do
  v=${item%%:*}
  for s in $(echo "${item#*:}" | tr , ' '); do RUNS+=("$v $s"); done
done

train() {  # variant seed [extra overrides...]
  local v=$1 s=$2; shift 2
  local t0=$(date +%s)
  timeout ${SWEEP_TRAIN_LIMIT:-300} $PY -m train --config configs/text2sql_cpu.json --set data.dir=/tmp/demo-data-2k \
    train.out_dir=/tmp/sweep/runs/$v-s$s train.seed=$s train.device=$DEVICE train.compile=false train.threads=1 \
    train.progress=false train.overwrite=true train.max_steps=$S5 train.lr_decay_steps=$S5 train.log_interval=500 train.ckpt_interval=$(steps 1000) \
    "$@" > /tmp/sweep/runs/$v-s$s.log 2>&1
  echo "$v s$s rc=$? $(( $(date +%s) - t0 )) s" >> "$OUTDIR/train_rc.txt"
}

# the Triton kernels compile once (a short run fills the cache), so the runs below do not all compile them
echo "warm-up $(date -u +%T)"; train warmup 0 train.max_steps=20 train.lr_decay_steps=20
train warmup 8 train.max_steps=20 train.lr_decay_steps=20 model.n_head=8
echo "training $(date -u +%T)"
for r in "${RUNS[@]}"; do
  set -- $r
  train "$1" "$2" ${VARIANT[$1]} &
done
wait
echo "scoring $(date -u +%T)"
for r in "${RUNS[@]}"; do set -- $r; for split in test_domains test_wordings; do
  [ -d /tmp/sweep/runs/$1-s$2/checkpoints ] && echo "$1 $2 $split"
done; done | CUDA_VISIBLE_DEVICES= xargs -r -P ${SWEEP_EVAL_PROCS:-16} -L 1 bash -c \
  'timeout ${SWEEP_EVAL_LIMIT:-200} '"$PY"' -m bench.decoding --checkpoint /tmp/sweep/runs/$0-s$1 --data /tmp/demo-data-2k \
     --split $2 --cost-examples 0 --modes constrained --threads 1 --limit ${SWEEP_EVAL_QUESTIONS:-0} --out /tmp/sweep/evals/$0-s$1-$2.json \
     > /tmp/sweep/evals/$0-s$1-$2.log 2>&1'
echo "summary $(date -u +%T)"
$PY bench/results/issue10-sweep-gpu/summarize.py /tmp/sweep "$OUTDIR"
tar czf "$OUTDIR/logs.tar.gz" -C /tmp/sweep --exclude=checkpoints --exclude="*.pt" runs evals
