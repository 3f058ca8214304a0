from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main

from .conftest import build_official


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = build_official(tmp_path_factory.mktemp("cli") / "official")
    out = root.parent / "run"
    status = main(["train", "--data", str(root), "--model", "unet", "--seeds", "5", "--epochs", "1",
                   "--widths", "4", "8", "16", "32", "--out", str(out), "--no-progress"])
    assert status == 0
    return root, out


def test_train_writes_checkpoint_and_tables(trained: tuple[Path, Path]) -> None:
    _, out = trained
    assert (out / "seed_5" / "model.safetensors").is_file()
    assert (out / "seed_5" / "metrics.jsonl").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [5] and "test F1 (locked)" in summary["table"]
    assert "| unet |" in (out / "summary.md").read_text()


def test_train_again_without_resume_is_a_user_error(trained: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root, out = trained
    status = main(["train", "--data", str(root), "--model", "unet", "--seeds", "5", "--epochs", "1",
                   "--widths", "4", "8", "16", "32", "--out", str(out), "--no-progress"])
    assert status == 2
    assert "--resume" in capsys.readouterr().err


def test_evaluate_json(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, out = trained
    target = tmp_path / "metrics.json"
    status = main(["evaluate", "--data", str(root), "--checkpoint", str(out / "seed_5" / "model.safetensors"),
                   "--json", str(target)])
    assert status == 0
    result = json.loads(target.read_text())
    assert {"precision", "recall", "f1", "iou", "threshold"} <= set(result)
    assert result["split"] == "test" and result["n_chips"] == 2
    assert 0.55 <= result["threshold"] <= 0.85
    assert result["at_0.5"]["threshold"] == 0.5
    # calibration measures of the (uncalibrated: identity) probabilities, and the reliability diagram
    assert {"ece", "brier", "brier_skill", "base_rate"} <= set(result) and result["calibration"] is None
    assert 0.0 <= result["ece"] <= 1.0 and 0.0 <= result["brier"] <= 1.0
    rate = result["base_rate"]
    assert result["brier_skill"] == pytest.approx(1 - result["brier"] / (rate * (1 - rate)))
    png = tmp_path / "metrics.reliability.png"
    assert result["reliability_png"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("landslide: error:") and err.count("\n") == 1
    assert main(["evaluate", "--data", str(tmp_path), "--checkpoint", str(tmp_path / "x.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_download_offline_says_where_to_get_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "download", "--dest", str(tmp_path / "l4s")]) == 2
    err = capsys.readouterr().err
    assert "zenodo" in err.lower() and "huggingface.co/datasets/" in err
