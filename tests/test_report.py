"""text2sql/hardness.py (Spider's hardness rules) and text2sql/report.py (charts + HTML page of wrong
answers): levels on hand-counted queries, charts written and not blank, the baseline bar only when there
is a baseline, the step chart only with several steps, everything on the page escaped, results re-run,
the evaluate --report hook, and the page rendered by headless Chromium (skipped when it is absent)."""
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot

from text2sql import report as report_mod
from text2sql.hardness import Components, components, hardness

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- hardness

@pytest.mark.parametrize("sql, counts, level", [
    # Spider's README examples for easy / medium / extra
    ("SELECT COUNT(*) FROM cars_data WHERE cylinders > 4", (1, 0, 0), "easy"),
    ("SELECT T2.name, COUNT(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
     "GROUP BY T1.stadium_id", (2, 0, 1), "medium"),
    ("SELECT AVG(life_expectancy) FROM country WHERE name NOT IN (SELECT T1.name FROM country AS T1 JOIN "
     "country_language AS T2 ON T1.code = T2.country_code WHERE T2.language = 'English' AND T2.is_official = 'T')",
     (1, 1, 1), "extra"),  # NOT counts as an aggregate (the script's quirk): avg + NOT = 2 > 1
    ("SELECT name FROM singer", (0, 0, 0), "easy"),
    ("SELECT name, age FROM singer ORDER BY age LIMIT 3", (2, 0, 1), "medium"),
    ("SELECT name FROM t WHERE a = 1 OR b LIKE '%x%'", (3, 0, 1), "hard"),      # where + OR + LIKE; 2 conditions
    ("SELECT name FROM t UNION SELECT name FROM u", (0, 1, 0), "hard"),
    ("SELECT a FROM t WHERE b > (SELECT avg(b) FROM t)", (1, 1, 0), "hard"),
    ("SELECT a FROM t JOIN u ON t.x = u.x JOIN v ON u.y = v.y WHERE t.z = 1 GROUP BY a", (4, 0, 0), "extra"),
    ("SELECT count(*), max(a) FROM t", (0, 0, 2), "medium"),                  # 2 aggregates, 2 columns
    ("SELECT a FROM t GROUP BY a HAVING count(*) > 1", (1, 0, 0), "easy"),    # HAVING's aggregate is not counted
    ("SELECT a FROM t GROUP BY a HAVING count(*) > 1 AND sum(b) > 2", (1, 0, 0), "easy"),  # ...its AND is, once
    ("SELECT a FROM (SELECT a FROM t)", (0, 0, 0), "easy"),                   # a subquery in FROM is not nested
])
def test_spider_hardness_rules(sql, counts, level):
    got = components(sqlglot.parse_one(sql, read="sqlite"))
    assert (got.component1, got.component2, got.others) == counts
    assert hardness(sql) == level


def test_hardness_level_boundaries_and_unparsable():
    assert Components(1, 0, 0).level == "easy" and Components(2, 0, 1).level == "medium"
    assert Components(1, 0, 2).level == "medium" and Components(3, 0, 2).level == "hard"
    assert Components(2, 0, 3).level == "hard" and Components(1, 1, 0).level == "hard"
    assert Components(4, 0, 0).level == "extra" and Components(0, 2, 0).level == "extra"
    assert hardness("SELEC nonsense (((") == "unknown"


# ---------------------------------------------------------------------------------------------------- report

EVIL = "<script>alert('x')</script> & \"quotes\""


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "shop.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE item (id INTEGER, name TEXT, price REAL)")
    con.executemany("INSERT INTO item VALUES (?, ?, ?)",
                    [(1, "pen", 1.5), (2, "book <b>", 12.0), (3, EVIL, 3.0)])
    con.commit()
    con.close()
    return path


def evaluation(db, step, n_right=2, baseline=None, run="runA"):
    examples = []
    right = [("How many items?", "SELECT count(*) FROM item", "SELECT count(*) FROM item"),
             ("Names of items", "SELECT name FROM item", "SELECT name FROM item")]
    wrong = [(f"Which items cost more than 2? {EVIL}", "SELECT name FROM item WHERE price > 2",
              "SELECT name FROM item WHERE price < 2"),
             ("Cheapest item", "SELECT name FROM item ORDER BY price LIMIT 1", "SELEC broken"),
             ("Items named like pen", "SELECT name FROM item WHERE name LIKE '%pen%'", "")]
    for i, (q, gold, pred) in enumerate(right[:n_right] + wrong):
        ok = (q, gold, pred) in right
        rec = {"db_id": "shop", "db_path": str(db), "question": q, "gold": gold, "pred": pred,
               "shape": "select" if "WHERE" not in gold else "where", "exec_match": ok, "exact_match": ok,
               "valid": ok, "error": None if ok or pred.startswith("SELECT") else "syntax error", "gold_error": None}
        if baseline is not None:
            rec["baseline_match"] = baseline[i % len(baseline)]
        examples.append(rec)
    return {"checkpoint": f"/runs/{run}/checkpoints/ckpt_{step:07d}.pt", "step": step, "data": "/data/shop",
            "split": "test", "summary": {}, "examples": examples}


def image_is_not_blank(path: Path) -> bool:
    import matplotlib.image as mpimg

    img = mpimg.imread(str(path))
    return img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50 and float(img[..., :3].std()) > 0.02


def test_report_writes_charts_and_an_escaped_page(db, tmp_path):
    files = report_mod.write_report([evaluation(db, 100)], tmp_path / "rep")
    assert {"shape", "hardness", "html", "json"} <= set(files) and "step" not in files
    for key in ("shape", "hardness"):
        assert files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image_is_not_blank(files[key])
    page = files["html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "book &lt;b&gt;" in page                      # a result row, re-run on the database, escaped
    assert "SELEC broken" in page and "syntax error" in page and "empty prediction" in page
    assert page.count('class="wrong"') == 3 and "data:image/png;base64," in page
    numbers = json.loads(files["json"].read_text())
    assert numbers["overall"] == {"n": 5, "correct": 2, "accuracy": 0.4}
    assert all("baseline_accuracy" not in b for b in numbers["by_shape"].values())
    assert set(numbers["by_hardness"]) <= {"easy", "medium", "hard", "extra", "unknown"}


def test_baseline_is_a_second_series_only_when_present(db, tmp_path):
    with_base = report_mod.write_report([evaluation(db, 100, baseline=[True, False])], tmp_path / "a")
    numbers = json.loads(with_base["json"].read_text())
    assert numbers["overall"]["baseline_accuracy"] == pytest.approx(3 / 5)
    assert all("baseline_accuracy" in b for b in numbers["by_shape"].values())
    # a separate baseline evaluation (issue 10's baseline written in the evaluation format) works too
    base = evaluation(db, 0, n_right=0)
    separate = report_mod.write_report([evaluation(db, 100)], tmp_path / "b", baseline=base)
    assert json.loads(separate["json"].read_text())["overall"]["baseline_accuracy"] == 0.0
    without = report_mod.write_report([evaluation(db, 100)], tmp_path / "c")
    assert with_base["shape"].read_bytes() != without["shape"].read_bytes()


def test_several_checkpoints_draw_accuracy_against_step(db, tmp_path):
    out = tmp_path / "rep"
    first = report_mod.add_evaluation(evaluation(db, 100, n_right=0), out)
    assert "step" not in first
    files = report_mod.add_evaluation(evaluation(db, 200, n_right=2), out)
    assert image_is_not_blank(files["step"])
    numbers = json.loads(files["json"].read_text())
    assert numbers["step"] == 200 and numbers["by_step"]["runA"] == [[100, 0.0], [200, 0.4]]
    assert len(list((out / "evaluations").glob("*.json"))) == 2


def test_cli_and_the_evaluate_hook(db, tmp_path, monkeypatch, capsys):
    ev = tmp_path / "eval_test.json"
    ev.write_text(json.dumps(evaluation(db, 300)))
    r = subprocess.run([sys.executable, "-m", "text2sql.report", str(ev), "--out", str(tmp_path / "cli")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and (tmp_path / "cli" / "index.html").is_file(), r.stderr
    bad = subprocess.run([sys.executable, "-m", "text2sql.report", str(db), "--out", str(tmp_path / "x")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr

    from text2sql import evaluate

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", lambda *a, **k: evaluation(db, 400))
    assert evaluate.main(["--checkpoint", "x", "--data", "y", "--report", str(tmp_path / "hook")]) == 0
    assert (tmp_path / "hook" / "index.html").is_file() and "report:" in capsys.readouterr().out


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_page_renders_in_headless_chromium(db, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    files = report_mod.write_report([evaluation(db, 100, baseline=[True, False])], tmp_path / "rep")
    shot = tmp_path / "shot.png"
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,1600",
                        files["html"].resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    assert image_is_not_blank(shot)
