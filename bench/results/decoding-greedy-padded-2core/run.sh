#!/bin/bash
# bench.decoding (greedy, constrained, beam+exec, greedy) on the main job's checkpoints: the three
# weight-averaged 5000-step trainings of ../main-job-ema-2core (train.seed 1-3, data in /tmp/demo-data) and
# three 6000-step trainings (/work/exp/st6k_s*, `python -m text2sql.demo --set train.max_steps=6000
# train.lr_decay_steps=6000 train.seed=S`, data in /tmp/demo-data-6k: the same seed-0 data), both held-out
# splits, 250 questions each. Greedy here is evaluate's greedy through decode_sql_batch (padded batches).
# Run from the repository root behind the CPU lock:
#   flock /tmp/cpu-heavy.lock bash bench/results/decoding-greedy-padded-2core/run.sh
set -e
out=bench/results/decoding-greedy-padded-2core
for ck in ema_s1_d0.998 ema_s2_d0.998 ema_s3_d0.998 st6k_s1 st6k_s2 st6k_s3; do
  data=/tmp/demo-data; [[ $ck == st6k* ]] && data=/tmp/demo-data-6k
  for split in test_domains test_wordings; do
    echo "== $ck $split"
    python -m bench.decoding --checkpoint /work/exp/$ck --data $data --split $split --cost-examples 5 \
      --modes greedy,constrained,beam+exec,greedy --out $out/$ck-$split.json 2>/dev/null | head -5
  done
done
