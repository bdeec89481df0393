#!/bin/bash
# One CPU training of the main job with configs/text2sql_cpu.json as committed (8 heads, 6000 steps since
# 2026-11-28) on prepared data: python -m text2sql.demo --set train.seed=SEED, timed.
# Run from the repository root: flock /tmp/cpu-heavy.lock bash bench/results/main-job-8heads-2core/run_cpu.sh NAME SEED DATA OUTROOT [more --set overrides]
set -u
name=$1; seed=$2; data=$3; root=$4; shift 4
mkdir -p "$root"
echo "== $name seed $seed $(date)"
/usr/bin/time -f "demo wall %e s" .venv/bin/python -m text2sql.demo --data "$data" --out "$root/$name-s$seed" \
  --no-progress --set train.seed=$seed "$@" > "$root/$name-s$seed.out" 2> "$root/$name-s$seed.err"
tail -1 "$root/$name-s$seed.err"
grep -A6 "held-out evaluation" "$root/$name-s$seed.out"
