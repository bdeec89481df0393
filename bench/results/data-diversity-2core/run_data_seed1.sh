#!/bin/bash
# Ran at f1da25b (the demo default was then 1000 x 30), from the repository root, behind the CPU lock at
# idle priority: flock /tmp/cpu-heavy.lock chrt --idle 0 bash bench/results/data-diversity-2core/<this file>
# Validation of the 2000 x 15 data on another data seed (1: other databases, other held-out themes), so the
# decision does not rest on the seed-0 test splits alone: train.seed 1 and 2, each configuration; every
# checkpoint scored on the 1000-database seed-1 data's held-out splits (250 questions each).
cd "$(dirname "$0")/../../.."  # the repository root
mkdir -p runs/data-diversity
for S in 1 2; do
  for cfg in base d2k; do
    if [ $cfg = base ]; then data=/tmp/demo-data-s1; extra="--databases 1000 --train-per-db 30"; else data=/tmp/demo-data-2k-s1; extra="--databases 2000 --train-per-db 15"; fi
    echo "== $cfg seed $S $(date)"
    .venv/bin/python -m text2sql.demo --data $data --out runs/data-diversity/${cfg}_ds1_s$S --seed 1 $extra \
      --eval-limit 10 --show 0 --no-progress --set train.seed=$S > runs/data-diversity/${cfg}_ds1_s$S.demo.txt 2> runs/data-diversity/${cfg}_ds1_s$S.demo.err
    grep "done in\|val loss" runs/data-diversity/${cfg}_ds1_s$S.demo.err | tail -2
    for split in test_domains test_wordings; do
      .venv/bin/python -m bench.decoding --checkpoint runs/data-diversity/${cfg}_ds1_s$S --data /tmp/demo-data-s1 --split $split \
        --cost-examples 0 --modes constrained,beam+exec --out bench/results/data-diversity-2core/evals/${cfg}_ds1_s$S-$split.json 2>/dev/null | tail -3
    done
  done
done
echo "== done $(date)"
