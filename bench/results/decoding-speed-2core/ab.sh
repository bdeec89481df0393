#!/bin/bash
# beam+exec against greedy, the session's start (c575afc) and its end side by side: bench.decoding on the
# README-command-1 checkpoint of the 8-head job, both held-out splits, the two trees alternating, REPS times.
# Usage: OLD=<worktree of c575afc> NEW=<worktree of the new commit> CK=<checkpoint> DATA=<data dir> OUT=<dir> \
#        PY=<python with the project installed> [REPS=3] bash ab.sh
set -e
for rep in $(seq ${REPS:-3}); do
  for split in test_domains test_wordings; do
    for tree in "$OLD" "$NEW"; do
      tag=$(basename $tree)-$split-$rep
      (cd $tree && flock /tmp/cpu-heavy.lock "$PY" -m bench.decoding --checkpoint $CK --data $DATA --split $split \
         --cost-examples 0 --modes greedy,beam+exec --out $OUT/$tag.json > $OUT/$tag.log 2>&1)
      python3 -c "
import json; d=json.load(open('$OUT/$tag.json'))
m={x['decode']: x for x in d['modes']}
print('$tag', ' '.join(f\"{k} {1000*v['seconds_per_question']:.2f} ms acc {v['execution_accuracy']:.3f} valid {v['valid_sql_rate']:.3f} sha {v['preds_sha256'][:10]}\" for k,v in m.items()), f\"ratio {m['beam+exec']['seconds_per_question']/m['greedy']['seconds_per_question']:.2f}x\")"
    done
  done
done
