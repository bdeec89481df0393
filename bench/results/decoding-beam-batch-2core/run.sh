#!/bin/bash
# Issue 11: beam batches of batch_size prompts (batch_size x width rows) against the old batch_size // width
# prompts. Since the change, --batch-size 8 gives beam search the old batches of 8 prompts (32 rows); greedy
# and constrained are timed at the default 32 prompts in the first run of each split.
# Run from the repository root: flock /tmp/cpu-heavy.lock bash bench/results/decoding-beam-batch-2core/run.sh CHECKPOINT DATA
set -eu
CK=$1; DATA=$2; OUT=bench/results/decoding-beam-batch-2core
for split in test_domains test_wordings; do
  .venv/bin/python -m bench.decoding --checkpoint "$CK" --data "$DATA" --split $split --cost-examples 0 \
    --modes greedy,constrained,beam+exec,greedy --batch-size 32 --out $OUT/$split-batch32.json --preds-out /tmp/preds-$split-32.json 2>&1 | tail -7
  .venv/bin/python -m bench.decoding --checkpoint "$CK" --data "$DATA" --split $split --cost-examples 0 \
    --modes beam+exec --batch-size 8 --out $OUT/$split-beam-batch8.json --preds-out /tmp/preds-$split-8.json 2>&1 | tail -3
  python3 -c "
import json
a = {m['decode']: m['preds'] for m in json.load(open('/tmp/preds-$split-32.json'))}
b = {m['decode']: m['preds'] for m in json.load(open('/tmp/preds-$split-8.json'))}
print('$split: beam+exec SQL identical in both batchings:', a['beam+exec'] == b['beam+exec'])"
done
