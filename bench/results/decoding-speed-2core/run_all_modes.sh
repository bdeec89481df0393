#!/bin/bash
# Every decode mode on both held-out splits (bench.decoding: accuracy, valid SQL, seconds per question, the
# constraint's per-token cost), then the breakdown of greedy and beam+exec (timed wrappers), at one commit.
# Usage (from the worktree of that commit): CK=<checkpoint> DATA=<data dir> OUT=<dir> PY=<python> bash run_all_modes.sh
set -e
for split in test_domains test_wordings; do
  flock /tmp/cpu-heavy.lock "$PY" -m bench.decoding --checkpoint $CK --data $DATA --split $split \
    --modes greedy,constrained,beam,beam+exec --out $OUT/all-modes-$split.json > $OUT/all-modes-$split.log 2>&1
done
for split in test_domains test_wordings; do
  flock /tmp/cpu-heavy.lock "$PY" bench/results/decoding-breakdown-2core/breakdown.py $CK $DATA $split \
    greedy,beam+exec,greedy > $OUT/breakdown-$split.txt 2>&1
done
