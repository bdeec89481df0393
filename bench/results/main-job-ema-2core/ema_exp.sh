#!/bin/bash
# usage: ema_exp.sh TRAIN_SEED DECAY   (run under flock); main job with a weight average, then the raw weights
set -e
cd /work/wt_exp; export PYTHONPATH=/work/wt_exp
S=$1; D=$2; R=/work/exp/ema_s${S}_d${D}
PY=/work/main/.venv/bin/python
/usr/bin/time -f "demo wall %e s" $PY -m text2sql.demo --data /tmp/demo-data --out $R --no-progress --show 0 \
  --set train.ema_decay=$D train.seed=$S > $R.demo.txt 2> $R.demo.err
rm -rf $R-raw; $PY /work/exp/strip_ema.py $R $R-raw
for split in test_domains test_wordings; do
  $PY -m text2sql.evaluate --checkpoint $R-raw --data /tmp/demo-data --split $split --no-progress --show 0 > $R-raw.$split.txt 2>&1 || true
done
grep -h "exec\|accuracy" $R.demo.txt | head -20; grep -h "exec\|accuracy" $R-raw.*.txt | head
