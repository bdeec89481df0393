#!/bin/bash
# bench.decoding on the three weight-averaged main-job checkpoints of bench/results/main-job-ema-2core
# (train.seed 1-3, data seed 0 in /tmp/demo-data), both held-out splits, all 250 questions, each mode from
# cold caches. Run from the repository root, queued behind the machine's CPU lock:
#   flock /tmp/cpu-heavy.lock bash bench/results/decoding-shared-2core/run.sh <tag>
set -e
tag=${1:-after}
out=bench/results/decoding-shared-2core
for s in 1 2 3; do
  for split in test_domains test_wordings; do
    python -m bench.decoding --checkpoint /work/exp/ema_s${s}_d0.998 --data /tmp/demo-data --split $split \
      --modes greedy,constrained,beam,beam+exec,greedy --out $out/$tag-s$s-$split.json 2>/dev/null | head -7
  done
done
