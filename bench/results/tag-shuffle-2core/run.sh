#!/bin/bash
# issue 10: tag shuffle, 2000x15 data seed 0, train.seed 1..3, evaluated on /tmp/demo-data's held-out splits
cd /work/main
for S in "$@"; do
  echo "== seed $S $(date)"
  /usr/bin/time -f "demo wall %e s" .venv/bin/python -m text2sql.demo --data /tmp/demo-data-2k-shuf --out /work/exp/shuf/s$S \
    --databases 2000 --train-per-db 15 --tag-shuffle 1 --eval-limit 50 --show 0 --no-progress --set train.seed=$S \
    > /work/exp/shuf/s$S.demo.txt 2> /work/exp/shuf/s$S.demo.err
  tail -3 /work/exp/shuf/s$S.demo.err
  for split in test_domains test_wordings; do
    .venv/bin/python -m bench.decoding --checkpoint /work/exp/shuf/s$S --data /tmp/demo-data --split $split \
      --cost-examples 0 --modes constrained --out /work/exp/shuf/s$S-$split.json 2>/dev/null | tail -3
  done
done
echo "== done $(date)"
