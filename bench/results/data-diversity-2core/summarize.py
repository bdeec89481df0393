import json, os, statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent          # bench/results/data-diversity-2core
ROOT = HERE.parents[2]
rows = {}
def acc(path):
    d = json.load(open(path))
    return {m["decode"]: m["execution_accuracy"] for m in d["modes"]}, d["n_questions"]
out = {}
# data seed 0: baseline numbers from bench/results/decoding-shared-2core (constrained, beam+exec) for ema_s1..3
base0 = {}
for s in (1, 2, 3):
    for split in ("test_domains", "test_wordings"):
        f = str(ROOT / f"bench/results/decoding-shared-2core/after-s{s}-{split}.json")
        if os.path.exists(f):
            base0[(s, split)] = acc(f)[0]
for s in (1, 2, 3):
    for split in ("test_domains", "test_wordings"):
        f = str(HERE / "evals" / f"s{s}-{split}.json")
        if os.path.exists(f):
            out[("data0", "2000x15", s, split)] = acc(f)[0]
        if (s, split) in base0:
            out[("data0", "1000x30", s, split)] = base0[(s, split)]
for cfg, name in (("base", "1000x30"), ("d2k", "2000x15")):
    for s in (1, 2):
        for split in ("test_domains", "test_wordings"):
            f = str(HERE / "evals" / f"{cfg}_ds1_s{s}-{split}.json")
            if os.path.exists(f):
                out[("data1", name, s, split)] = acc(f)[0]
for k in sorted(out):
    print(k, {m: f"{v:.1%}" for m, v in out[k].items()})
for data in ("data0", "data1"):
    for split in ("test_domains", "test_wordings"):
        for mode in ("constrained", "beam+exec"):
            line = []
            for cfg in ("1000x30", "2000x15"):
                v = [out[k][mode] for k in out if k[0] == data and k[1] == cfg and k[3] == split]
                line.append(f"{cfg}: " + "/".join(f"{x:.1%}" for x in v) + (f" mean {statistics.mean(v):.1%}" if v else ""))
            print(data, split, mode, " | ".join(line))
json.dump([{"data_seed": int(k[0][-1]), "config": k[1], "train_seed": k[2], "split": k[3], **v} for k, v in sorted(out.items())],
          open(HERE / "summary.json", "w"), indent=1)
