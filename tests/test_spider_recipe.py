"""`python -m text2sql.spider_recipe` end to end at toy scale, in a fresh interpreter.

The recipe's step-order test (test_entry_points.py) replaces prepare/train/evaluate with recorders, so it
could not see that the recipe never registered the text-to-SQL data sources: the real command failed at
step 1 with "unknown data source 'sqltext'" until it imported text2sql.prepare. A fresh interpreter matters:
inside pytest another test may already have imported text2sql.prepare, which would hide the bug again."""
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_spider_folder(root: Path, n_dbs: int = 4) -> None:
    """A Spider-format folder of `n_dbs` small music databases with gold questions on each."""
    records = []
    for d in range(n_dbs):
        db_id = f"music_{d}"
        path = root / "database" / db_id / f"{db_id}.sqlite"
        path.parent.mkdir(parents=True)
        conn = sqlite3.connect(path)
        conn.executescript("CREATE TABLE singer (id INT PRIMARY KEY, name TEXT, country TEXT, age INT);"
                           "CREATE TABLE song (id INT PRIMARY KEY, title TEXT, sales REAL, "
                           "singer_id INT REFERENCES singer(id));")
        countries = ["France", "Peru", "Japan", "Chile"]
        conn.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)",
                         [(i, f"Singer {i}", countries[i % 4], 20 + 3 * i) for i in range(12)])
        conn.executemany("INSERT INTO song VALUES (?, ?, ?, ?)",
                         [(i, f"Song {i}", 1000.0 + 37 * i, i % 12) for i in range(30)])
        conn.commit()
        conn.close()
        records += [{"db_id": db_id, "question": "How many singers are there?", "query": "SELECT count(*) FROM singer"},
                    {"db_id": db_id, "question": "List the names of singers from France.",
                     "query": "SELECT name FROM singer WHERE country = 'France'"}]
    (root / "train.json").write_text(json.dumps(records))


def test_recipe_runs_end_to_end_and_augments_only_training_databases(tmp_path):
    spider, work, runs = tmp_path / "spider", tmp_path / "work", tmp_path / "runs"
    make_spider_folder(spider)
    text = tmp_path / "english.txt"
    text.write_text("The singer sang a song about the sea and the sky.\n" * 200)
    cmd = [sys.executable, "-m", "text2sql.spider_recipe", "--spider-dir", str(spider), "--text", str(text),
           "--holdout-databases", "1", "--work", str(work), "--runs", str(runs), "--pretrain-steps", "2",
           "--finetune-steps", "2", "--vocab-size", "400", "--block-size", "256", "--augment-per-db", "6",
           "--no-progress", "--set", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "train.batch_size=2",
           "train.compile=false", "train.dtype=fp32", "train.eval_iters=1"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "unknown data source" not in res.stderr

    def db_ids(split):
        lines = (work / "spider" / "examples" / f"{split}.jsonl").read_text().splitlines()
        return [json.loads(line)["db_id"] for line in lines]

    train, val = db_ids("train"), db_ids("val")
    assert len(set(val)) == 1 and not set(val) & set(train)  # one whole database held out
    assert len(val) == 2  # val keeps Spider's gold questions only: no generated ones
    assert len(train) > 3 * 2  # 3 training databases x 2 gold questions, plus generated ones
    report = json.loads((runs / "spider" / "eval_val.json").read_text())
    assert report["summary"]["n"] == 2 and report["split"] == "val"

    # an interrupted recipe continues: same options -> both prepared folders reused, both stages resumed
    (runs / "spider" / "eval_val.json").unlink()
    again = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("--resume: reusing") == 2 and again.stderr.count("[train] resumed from") == 2
    assert (runs / "spider" / "eval_val.json").is_file()
    # other options for the fine-tuning data: that step and the fine-tuning run again from the start
    third = subprocess.run(cmd + ["--resume", "--augment-per-db", "3"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stderr.count("--resume: reusing") == 1 and third.stderr.count("[train] resumed from") == 1
    # other training settings for pretraining: it starts over, and so does everything after it
    fourth = subprocess.run(cmd + ["--resume", "--augment-per-db", "3", "--pretrain-steps", "3"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert fourth.stderr.count("--resume: reusing") == 1 and "[train] resumed from" not in fourth.stderr


def test_recipe_reports_a_missing_spider_folder_as_a_user_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "text2sql.spider_recipe", "--spider-dir", str(tmp_path / "nope"),
                          "--work", str(tmp_path / "w"), "--runs", str(tmp_path / "r"), "--no-progress"],  # (default --text)
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "error:" in res.stderr and "nope" in res.stderr and "Traceback" not in res.stderr


# Runs the recipe, but the fine-tuning stage dies (os._exit, like a kill) right after its step-2 checkpoint.
DIES_IN_FINETUNING = """
import os, sys
import train.loop
from text2sql.spider_recipe import main

save = train.loop.save_checkpoint

def save_then_die(out_dir, step, *args, **kwargs):
    path = save(out_dir, step, *args, **kwargs)
    if os.path.basename(str(out_dir)) == "spider" and step == 2:
        os._exit(9)
    return path

train.loop.save_checkpoint = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_resume_continues_a_training_stage_that_was_killed(tmp_path):
    spider, work, runs = tmp_path / "spider", tmp_path / "work", tmp_path / "runs"
    make_spider_folder(spider)
    text = tmp_path / "english.txt"
    text.write_text("The singer sang a song about the sea and the sky.\n" * 200)
    args = ["--spider-dir", str(spider), "--text", str(text), "--holdout-databases", "1", "--work", str(work),
            "--runs", str(runs), "--pretrain-steps", "2", "--finetune-steps", "4", "--vocab-size", "400",
            "--block-size", "256", "--augment-per-db", "2", "--no-progress", "--set", "model.n_layer=1",
            "model.n_head=2", "model.n_embd=32", "train.batch_size=2", "train.compile=false", "train.dtype=fp32",
            "train.eval_iters=1", "train.ckpt_interval=2", "train.keep_last=5"]
    killed = subprocess.run([sys.executable, "-c", DIES_IN_FINETUNING] + args, cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-3000:]
    assert (runs / "spider" / "checkpoints" / "ckpt_0000002.pt").is_file()
    again = subprocess.run([sys.executable, "-m", "text2sql.spider_recipe"] + args + ["--resume"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    # fine-tuning goes on from step 2 (before the fix it was started over and its checkpoints deleted)
    assert "ckpt_0000002.pt at step 2" in again.stderr, again.stderr[-3000:]
    assert "deleted" not in again.stderr
    assert (runs / "spider" / "checkpoints" / "ckpt_0000004.pt").is_file()
    assert (runs / "spider" / "eval_val.json").is_file()
