#!/usr/bin/env bash
# Before/after of left-padded decoding (branch `pad`), one run under the machine's CPU lock:
#   flock /tmp/cpu-heavy.lock bash bench/results/decoding-padded-2core/run.sh
# before: main at the time of the run; after: the same commit with branch pad's commits on top. Both use the
# harness of the after tree (bench/decoding.py; it only adds a hash of the predictions to the JSON), so the
# code measured differs only in gpt/ and text2sql/decoding.py. After a warm-up, order before, after, after,
# before on the Spider model (the machine's drift shows in the repeat), then before, after on the main job's model.
set -euo pipefail
REPO=/work/main
PY=/work/main/.venv/bin/python
RES=${RES:-/work/wt_pad/bench/results/decoding-padded-2core}
PREDS=${PREDS:-/tmp/decoding-padded-preds}   # predicted SQL (quotes Spider values): not committed
SPIDER_RUN=${SPIDER_RUN:-/work/spider6/runs/spider}
SPIDER_DATA=${SPIDER_DATA:-/work/spider6/data/spider}
DEMO_RUN=${DEMO_RUN:-/tmp/demo-run}
DEMO_DATA=${DEMO_DATA:-/tmp/demo-data}
mkdir -p "$RES" "$PREDS"

base=$(git -C $REPO rev-parse main)
for side in before after; do
  rm -rf /work/wt_pad_$side; git -C $REPO worktree prune
  git -C $REPO worktree add --detach /work/wt_pad_$side "$base" >/dev/null
  cp $REPO/gpt/_bpe*.so /work/wt_pad_$side/gpt/
done
git -C /work/wt_pad_after -c user.name=bench -c user.email=bench@localhost cherry-pick "$base"..pad >/dev/null
cp /work/wt_pad_after/bench/decoding.py /work/wt_pad_before/bench/decoding.py
echo "main $base; after $(git -C /work/wt_pad_after rev-parse HEAD) (tree $(git -C /work/wt_pad_after rev-parse HEAD^{tree}))" \
  | tee "$RES/commits.txt"

bench() {  # label side run data split limit modes
  (cd /work/wt_pad_$2 && PYTHONPATH=/work/wt_pad_$2 $PY -m bench.decoding --checkpoint "$3" --data "$4" \
     --split "$5" --limit "$6" --modes "$7" --cost-examples 10 --out "$RES/$1.json" --preds-out "$PREDS/$1.json")
}
SPIDER_MODES=greedy,constrained,beam+exec,greedy
# warm-up, not kept: the first run after a training job measured slower in every mode (files and databases
# read for the first time, the machine settling)
(cd /work/wt_pad_after && PYTHONPATH=/work/wt_pad_after $PY -m bench.decoding --checkpoint "$SPIDER_RUN" \
   --data "$SPIDER_DATA" --split val --limit 200 --modes greedy,beam+exec --cost-examples 1 --out /tmp/decoding-padded-warmup.json) >/dev/null 2>&1
bench spider-before-1 before "$SPIDER_RUN" "$SPIDER_DATA" val 200 $SPIDER_MODES
bench spider-after-1 after "$SPIDER_RUN" "$SPIDER_DATA" val 200 $SPIDER_MODES
bench spider-after-2 after "$SPIDER_RUN" "$SPIDER_DATA" val 200 $SPIDER_MODES
bench spider-before-2 before "$SPIDER_RUN" "$SPIDER_DATA" val 200 $SPIDER_MODES
if [ -d "$DEMO_RUN/checkpoints" ]; then
  bench demo-before before "$DEMO_RUN" "$DEMO_DATA" test_domains 0 $SPIDER_MODES
  bench demo-after after "$DEMO_RUN" "$DEMO_DATA" test_domains 0 $SPIDER_MODES
fi
date -u +"finished %FT%TZ" | tee -a "$RES/commits.txt"
