"""Record every parse_prefix call of a beam+exec evaluation (this tree's code), then replay the calls with
the parser of another tree and with this one, from cold schema caches, alternating, garbage collector off
(as decoding runs): the same options (a hash of all of them)? how long?

    flock /tmp/cpu-heavy.lock .venv/bin/python bench/results/decoding-speed-2core/replay_parses.py \
        OLD_TREE N_QUESTIONS        (env: CK checkpoint, DATA data dir, SPLITS, REPS)

The other tree's parser runs against this tree's SchemaIndex objects, so it works across commits that keep
the index's attributes (it was run commit by commit as the parser changed: see README.md)."""
import sys, time, os, importlib.util, hashlib, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
torch.set_num_threads(1); torch.set_grad_enabled(False)
from pathlib import Path
import text2sql.sql_constraint as S
from text2sql.evaluate import tokenizer_override, evaluate
from text2sql.prepare import load_examples
from train.checkpoint import load_for_inference
OLD = sys.argv[1]; N = int(sys.argv[2])
spec = importlib.util.spec_from_file_location("old_sc", f"{OLD}/text2sql/sql_constraint.py")
old = importlib.util.module_from_spec(spec); sys.modules["old_sc"] = old; spec.loader.exec_module(old)
CK = os.environ['CK']; DATA = Path(os.environ['DATA'])
res = []
for split in os.environ.get("SPLITS", "test_wordings,test_domains").split(","):
    ex, meta = load_examples(DATA, split); ex = ex[:N]
    tok = tokenizer_override(CK, DATA, meta)
    model, tok, state, _ = load_for_inference(CK, torch.device('cpu'), tok)
    calls = []
    orig = S.parse_prefix
    def rec(index, values, lexemes, exact=True):
        calls.append((index, values, lexemes, exact)); return orig(index, values, lexemes, exact)
    S.parse_prefix = rec
    S.SchemaIndex.clear_shared()
    evaluate(model, tok, ex, model.config.block_size, 96, 128, 0.0, 32, 2.0, progress=False, decode='beam+exec')
    S.parse_prefix = orig
    indexes = {id(c[0]): c[0] for c in calls}
    def cold():
        for ix in indexes.values():
            for name, v in vars(ix).items():
                if isinstance(v, dict) and (name.endswith("cache") or name.startswith("_")):
                    v.clear()
            if hasattr(ix, "speller"):
                ix.speller.cache.clear()
    def replay(f):
        return [f(*c) for c in calls]
    times = {"old": [], "new": []}
    sigs = {}
    import gc; gc.collect(); gc.disable()
    for r in range(int(os.environ.get("REPS", 3))):
        for tag, f in (("old", old.parse_prefix), ("new", S.parse_prefix)):
            cold(); t0 = time.perf_counter(); out = replay(f); times[tag].append(time.perf_counter() - t0)
            sig = [None if o is None else (o.words, tuple(sorted(o.puncts)), o.strings, o.numbers, o.end) for o in out]
            sigs.setdefault(tag, hashlib.sha256(repr(sig).encode()).hexdigest()[:16])
    print(f"{split}: {len(calls)} parses over {len(indexes)} schemas; old {1000*min(times['old']):.0f} ms, new {1000*min(times['new']):.0f} ms (min of 3, cold caches); options old {sigs['old']} new {sigs['new']} {'SAME' if sigs['old']==sigs['new'] else 'DIFFERENT'}", flush=True)
