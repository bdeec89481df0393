"""Tokenizer benchmark: our C++ BPE vs tiktoken (encoding) and vs Hugging Face tokenizers (training).

    python -m bench.tokenizer                 # full run, writes bench/results/tokenizer.{json,csv}
    python -m bench.tokenizer --quick         # fewer repeats, smaller training runs

Everything is measured in one process, on one machine, side by side: for each repeat the
competitors run back to back (in alternating order), so a load spike hits both. We report the
median MB/s over repeats and the median of the per-repeat speed ratios. Ids are checked to be
identical before anything is timed.

Encoding uses GPT-2's vocabulary (encoder.json + vocab.bpe, from --gpt2-dir) on English text
(--text files). Training learns 8k and 32k vocabularies from the same text, single-threaded on both
sides (TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1 for Hugging Face).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Must be set before `tokenizers` is imported: its Rust thread pool reads them once.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _side_by_side(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Runs every fn once per repeat, alternating their order; returns seconds per repeat."""
    names = list(fns)
    times = {n: [] for n in names}
    for n in names:  # warm-up (caches, thread pools, lazy UTF-8 views)
        fns[n]()
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            times[n].append(_time(fns[n]))
    return times


def bench_encode(args, rows: list[dict]) -> None:
    import tiktoken

    from gpt.tokenizer import Tokenizer

    ours = Tokenizer.from_gpt2(args.gpt2_dir / "encoder.json", args.gpt2_dir / "vocab.bpe")
    theirs = ours.to_tiktoken()
    texts = {p.name: p.read_text(encoding="utf-8") for p in args.text}
    for name, text in texts.items():
        mb = len(text.encode("utf-8")) / 1e6
        docs = [d for d in text.split("\n\n") if d]
        # Correctness first: identical ids, or nothing is timed.
        if ours.encode_ordinary(text) != theirs.encode_ordinary(text):
            raise SystemExit(f"ids differ from tiktoken on {name}: not benchmarking")
        if ours.encode_batch(docs, num_threads=2) != theirs.encode_batch(docs, num_threads=2):
            raise SystemExit(f"batch ids differ from tiktoken on {name}: not benchmarking")
        cases = {
            "encode_ordinary, 1 thread": {
                "tiktoken": lambda: theirs.encode_ordinary(text),
                "ours": lambda: ours.encode_ordinary(text),
                "ours (numpy out)": lambda: ours.encode_ordinary(text, numpy=True),
            },
            "encode_batch, 1 thread": {
                "tiktoken": lambda: theirs.encode_batch(docs, num_threads=1),
                "ours": lambda: ours.encode_batch(docs, num_threads=1),
                "ours (numpy out)": lambda: ours.encode_batch(docs, num_threads=1, numpy=True),
            },
            "encode_batch, 2 threads": {
                "tiktoken": lambda: theirs.encode_batch(docs, num_threads=2),
                "ours": lambda: ours.encode_batch(docs, num_threads=2),
                "ours (numpy out)": lambda: ours.encode_batch(docs, num_threads=2, numpy=True),
            },
        }
        for case, fns in cases.items():
            times = _side_by_side(fns, args.repeats)
            base = times["tiktoken"]
            for provider, ts in times.items():
                ratio = statistics.median(b / t for b, t in zip(base, ts))
                rows.append({"bench": "encode", "text": name, "case": case, "provider": provider,
                             "MB/s": round(mb / statistics.median(ts), 2), "x tiktoken": round(ratio, 2),
                             "repeats": args.repeats})
                print(f"  {name:22s} {case:26s} {provider:18s} {mb / statistics.median(ts):8.1f} MB/s "
                      f"{ratio:6.2f}x tiktoken", flush=True)
        # Thread scaling of our batch encoder, measured in one interleaved loop.
        scaling = _side_by_side({1: lambda: ours.encode_batch(docs, num_threads=1, numpy=True),
                                 2: lambda: ours.encode_batch(docs, num_threads=2, numpy=True)}, args.repeats)
        s = statistics.median(a / b for a, b in zip(scaling[1], scaling[2]))
        rows.append({"bench": "encode", "text": name, "case": "encode_batch 2 threads vs 1 (numpy out)",
                     "provider": "ours", "speedup": round(s, 2), "repeats": args.repeats})
        print(f"  {name:22s} ours encode_batch: 2 threads are {s:.2f}x faster than 1 (numpy out)", flush=True)


def bench_train(args, rows: list[dict]) -> None:
    from gpt.tokenizer import ENDOFTEXT, Tokenizer

    docs = []
    for p in args.text:
        docs.extend(d for d in p.read_text(encoding="utf-8").split("\n\n") if d)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    try:
        import tokenizers
        from tokenizers import models, pre_tokenizers, trainers
    except ImportError:
        tokenizers = None
        print("  (Hugging Face `tokenizers` is not installed: pip install tokenizers; timing ours only)")

    def train_hf(vocab_size: int):
        tok = tokenizers.Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(docs, trainer)
        return tok

    for vocab_size in args.train_vocab:
        fns = {"ours": lambda: Tokenizer.train(docs, vocab_size)}
        if tokenizers is not None:
            fns["HF tokenizers"] = lambda: train_hf(vocab_size)
        times = _side_by_side(fns, args.train_repeats)
        ours_med = statistics.median(times["ours"])
        for provider, ts in times.items():
            row = {"bench": "train", "text": "+".join(p.name for p in args.text), "case": f"vocab {vocab_size}",
                   "provider": provider, "seconds": round(statistics.median(ts), 3), "MB": round(mb, 2),
                   "repeats": args.train_repeats}
            if provider != "ours":
                row["ours speedup"] = round(statistics.median(t / o for t, o in zip(ts, times["ours"])), 2)
            rows.append(row)
            extra = f"  (ours is {row['ours speedup']:.2f}x faster)" if "ours speedup" in row else ""
            print(f"  train vocab {vocab_size:6d} {provider:14s} {statistics.median(ts):7.2f} s{extra}", flush=True)
        del ours_med


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tokenizer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpt2-dir", type=Path, default=SHARED / "gpt2", help="folder with encoder.json and vocab.bpe")
    parser.add_argument("--text", type=Path, nargs="+",
                        default=[SHARED / "text" / "tinyshakespeare.txt", SHARED / "text" / "warpeace.txt"])
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per encoding case (median)")
    parser.add_argument("--train-vocab", type=int, nargs="*", default=[8192, 32768])
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 repeats, one training repeat")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where to write results")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.train_repeats = 3, 1
    for p in [args.gpt2_dir / "encoder.json", args.gpt2_dir / "vocab.bpe", *args.text]:
        if not p.exists():
            print(f"error: {p} does not exist (pass --gpt2-dir / --text)", file=sys.stderr)
            return 2

    import tiktoken

    from bench.kernels import device_name

    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": device_name("cpu"),
            "cores": os.cpu_count(), "python": platform.python_version(), "tiktoken": tiktoken.__version__,
            "load average at start": os.getloadavg()}
    try:
        import tokenizers

        meta["tokenizers"] = tokenizers.__version__
    except ImportError:
        pass
    print(f"machine: {meta['cpu']}, {meta['cores']} cores, load {meta['load average at start']}")
    rows: list[dict] = []
    print("encoding (GPT-2 vocabulary):")
    bench_encode(args, rows)
    if args.train_vocab:
        print("training (single thread):")
        bench_train(args, rows)
    meta["load average at end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tokenizer.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    fields = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with open(args.out / "tokenizer.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out / 'tokenizer.json'} and {args.out / 'tokenizer.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
