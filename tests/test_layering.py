"""The floors of DESIGN.md: each package imports only from the floors below it, and nothing below
text2sql/ knows SQL exists. Checked on the source (every import statement, including the ones inside
functions), so a lazy import that runs back up fails here too."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"kernels": 1, "gpt": 2, "data": 3, "train": 4, "text2sql": 5, "bench": 6}


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages named by the file's import statements."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in FLOORS or n.split(".")[0] == "tests"}
    return found


def project_files():
    return [p for pkg in FLOORS for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("path", project_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_from_lower_floors(path):
    floor = FLOORS[path.relative_to(ROOT).parts[0]]
    upward = {pkg for pkg in imported_packages(path) if pkg == "tests" or FLOORS[pkg] > floor}
    assert not upward, f"{path.relative_to(ROOT)} (floor {floor}) imports {sorted(upward)}"


def test_the_checker_sees_lazy_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from text2sql.sql_exec import execute_sql\n    import bench.kernels\n")
    assert imported_packages(bad) == {"text2sql", "bench"}


@pytest.mark.parametrize("pkg", ["kernels", "gpt", "data", "train"])
def test_nothing_below_text2sql_knows_sql(pkg):
    """No SQL module or SQL vocabulary below text2sql/ (the words a SQL-aware module would need)."""
    for path in sorted((ROOT / pkg).rglob("*.py")):
        text = path.read_text()
        for word in ("sqlite3", "SELECT ", "<|sql|>", "<|schema|>"):
            assert word not in text, f"{path.relative_to(ROOT)} mentions {word!r}"
