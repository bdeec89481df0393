#!/bin/bash
# CPU confirmations of the issue-10 sweep's settings: name seed overrides...
cd /work/main
name=$1; seed=$2; shift 2
echo "== $name seed $seed $(date)"
/usr/bin/time -f "demo wall %e s" .venv/bin/python -m text2sql.demo --data /tmp/demo-fresh --out /work/exp/h8/$name-s$seed \
  --no-progress --set train.seed=$seed "$@" > /work/exp/h8/$name-s$seed.out 2> /work/exp/h8/$name-s$seed.err
tail -1 /work/exp/h8/$name-s$seed.err
grep -A6 "held-out evaluation" /work/exp/h8/$name-s$seed.out
