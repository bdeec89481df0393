#!/bin/bash
# A/B: copied prompt rows (OLD, e02870a) vs BeamKVCache (this tree), alternating, same checkpoint and data.
# Run from the repository root: flock /tmp/cpu-heavy.lock bash bench/results/decoding-breakdown-2core/ab.sh CHECKPOINT DATA OLD_WORKTREE [OUT]
ROOT=$(pwd); CK=$1; DATA=$2; OLD=$3; OUT=${4:-/tmp/ab}; mkdir -p $OUT  # OLD: a worktree of the commit before (e02870a)
for split in test_domains test_wordings; do
  for rep in 1 2; do
    for tree in $OLD $ROOT; do
      tag=$(basename $tree)-$split-$rep
      (cd $tree && $ROOT/.venv/bin/python -m bench.decoding --checkpoint $CK --data $DATA --split $split --cost-examples 0 \
         --modes greedy,beam+exec --out $OUT/ab-$tag.json > /dev/null 2>&1)
      python3 -c "
import json; d=json.load(open('$OUT/ab-$tag.json'))
print('$tag', ' '.join(f\"{m['decode']} {1000*m['seconds_per_question']:.2f}ms acc {m['execution_accuracy']} {m['preds_sha256'][:10]}\" for m in d['modes']))"
    done
  done
done
