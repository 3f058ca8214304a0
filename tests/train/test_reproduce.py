from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.models.checkpoint import load_checkpoint
from pipeline.train.reproduce import main


@pytest.mark.slow
def test_smoke_reproduction_runs_end_to_end(tmp_path: Path, sample_dir: Path) -> None:
    out = tmp_path / "repro"
    assert main(["--smoke", "--data", str(sample_dir), "--seeds", "42", "123", "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    assert table["smoke"] is True and set(table["rows"]) == {"unet", "clay", "hybrid"}
    assert "SMOKE RUN" in (out / "comparison.md").read_text()
    for name in ("unet", "clay", "hybrid"):
        _model, meta = load_checkpoint(out / name / "seed_42" / "model.safetensors")  # LoRA merged, strict
        assert meta.model == name and 0.55 <= meta.threshold <= 0.85


def test_full_run_requires_a_clay_checkpoint(tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
