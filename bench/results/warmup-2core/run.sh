#!/bin/bash
# main-job training (5000 steps, data seed 0 in /tmp/demo-data) with a 300-step warm-up instead of 30;
# only the final validation loss is read (it orders held-out-domain accuracy, README)
source /work/main/.venv/bin/activate
cd /work/main
for S in 2 1337 1; do
  OMP_WAIT_POLICY=PASSIVE python -m train --config configs/text2sql_cpu.json --set data.dir=/tmp/demo-data \
    train.out_dir=/work/exp/wu300_s$S train.overwrite=true train.threads=2 train.progress=false train.seed=$S \
    train.warmup_steps=300 > /work/exp/wu300_s$S.log 2>&1
  echo "seed $S: $(grep 'val loss' /work/exp/wu300_s$S.log | tail -1)" >> /work/exp/wu300.txt
done
