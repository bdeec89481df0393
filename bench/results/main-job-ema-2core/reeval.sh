#!/bin/bash
# the three EMA checkpoints, evaluated with main's decoder (beam+exec default)
cd /work/main
for s in 1 2 3; do for split in test_domains test_wordings; do
  .venv/bin/python -m text2sql.evaluate --checkpoint /work/exp/ema_s${s}_d0.998 --data /tmp/demo-data --split $split --no-progress --show 0 --out /work/exp/final_s${s}_$split.json 2>&1 | grep "execution accuracy"
done; done
