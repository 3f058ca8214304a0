"""The notebooks: committed without outputs, and they run offline (nbmake, as CI runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
EXPECTED = {"01_quickstart.ipynb", "02_training.ipynb", "03_reading_outputs.ipynb"}


def test_the_three_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_with_one_parameters_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), (
        f"strip the outputs of {path.name}"
    )
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert "LANDSLIDE_" in tagged[0].source  # the offline/CI default comes from the environment


@pytest.mark.slow
def test_notebooks_run_offline(tmp_path: Path) -> None:
    env = {**os.environ, "LANDSLIDE_OFFLINE": "1", "MPLBACKEND": "Agg"}
    env.pop("LANDSLIDE_STORE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=300", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), *map(str, NOTEBOOKS)],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
