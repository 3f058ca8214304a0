"""The layers hold: nothing under ``pipeline/`` imports ``flows`` (or Prefect)."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).resolve().parent
FORBIDDEN = ("flows", "prefect")


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_under_pipeline_imports_flows_or_prefect() -> None:
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 50 and ROOT / "event" / "versions.py" in files
    bad = [
        f"{f.relative_to(ROOT.parent)} imports {name}"
        for f in files
        for name in sorted(_imported(f))
        if name.split(".")[0] in FORBIDDEN
    ]
    assert bad == []


def test_the_check_sees_an_import_of_flows(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from flows.map_versions import advance_quake\n")
    assert "flows.map_versions" in _imported(f)
