#!/bin/bash
cd /work/main
for s in 1 2 3; do for split in test_domains test_wordings; do
.venv/bin/python -m bench.decoding --checkpoint /work/exp/ema_s${s}_d0.998 --data /tmp/demo-data --split $split --limit 0 --modes greedy,constrained,beam+exec,greedy --cost-examples 1 --out /work/main/bench/results/main-job-ema-2core/decoding-s${s}-$split.json 2>&1 | grep -v "^\[" | tail -5
done; done
