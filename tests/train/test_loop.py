from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.bands import SWEEP_BANDS
from pipeline.errors import UserError
from pipeline.models.checkpoint import load_checkpoint
from pipeline.train.config import TrainConfig
from pipeline.train.data import detect_layout
from pipeline.train.experiment import prepare_data, run_seed
from pipeline.train.loop import BEST_FILE, HISTORY_FILE, STATE_FILE, fit
from pipeline.train.losses import SegmentationLoss

from .conftest import TINY_UNET, build_official

CONFIG = TrainConfig("unet", TINY_UNET, seed=7, epochs=4, patience=10, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    root = build_official(tmp_path_factory.mktemp("l4s") / "official")
    return prepare_data(root, SWEEP_BANDS)


def _train_loss(model: torch.nn.Module, data) -> float:
    model.eval()
    with torch.no_grad():
        return SegmentationLoss()(model(data.train.images), data.train.masks).item()


def test_short_training_reduces_the_loss(data, tmp_path: Path) -> None:
    from pipeline.models.registry import build_model

    torch.manual_seed(CONFIG.seed)
    before = _train_loss(build_model("unet", TINY_UNET), data)
    config = replace(CONFIG, epochs=6, augment=False)
    result = fit(config, data.train, data.validation, tmp_path / "run")
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    # the final model of the loop, not only the reported averages, fits the train chips better
    last = load_file(str(tmp_path / "run" / BEST_FILE))
    assert last and _train_loss(result.model, data) < before
    lines = (tmp_path / "run" / HISTORY_FILE).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 7))


def test_resume_matches_an_uninterrupted_run(data, tmp_path: Path) -> None:
    full = fit(CONFIG, data.train, data.validation, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit(CONFIG, data.train, data.validation, tmp_path / "killed", stop_after_epochs=2)
    state = torch.load(tmp_path / "killed" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 1 and not state["finished"]
    with pytest.raises(UserError, match="--resume"):
        fit(CONFIG, data.train, data.validation, tmp_path / "killed")
    resumed = fit(CONFIG, data.train, data.validation, tmp_path / "killed", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert resumed.best_epoch == full.best_epoch
    a = torch.load(tmp_path / "full" / STATE_FILE, weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / STATE_FILE, weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="different settings"):
        fit(replace(CONFIG, lr=1e-4), data.train, data.validation, tmp_path / "killed", resume=True)


def _invert_test_masks(root: Path) -> None:
    for path in (root / "TestData" / "mask").glob("mask_*.h5"):
        with h5py.File(path, "r+") as fh:
            fh["mask"][...] = 1 - fh["mask"][()]


def test_threshold_is_locked_without_looking_at_test(tmp_path: Path) -> None:
    config = replace(CONFIG, epochs=2)
    summaries = []
    for name, adversarial in (("honest", False), ("adversarial", True)):
        root = build_official(tmp_path / name)
        if adversarial:
            _invert_test_masks(root)
        summaries.append(run_seed(config, prepare_data(root, SWEEP_BANDS), tmp_path / f"run-{name}"))
    honest, adversarial = summaries
    assert honest["threshold"] == adversarial["threshold"]
    assert honest["validation"] == adversarial["validation"]
    assert honest["test"]["locked"] != adversarial["test"]["locked"]  # the test split did change
    assert 0.55 <= honest["threshold"] <= 0.85


def test_run_seed_writes_a_loadable_checkpoint(data, tmp_path: Path) -> None:
    summary = run_seed(replace(CONFIG, epochs=1), data, tmp_path / "run", command="test")
    model, meta = load_checkpoint(summary["checkpoint"])
    assert meta.model == "unet" and meta.bands == SWEEP_BANDS
    assert meta.config["widths"] == TINY_UNET["widths"]
    assert meta.threshold == summary["threshold"]
    assert meta.training["data_layout"] == "official"
    assert meta.training["split_ids"]["validation"] == [1, 2]
    assert np.allclose(meta.norm_mean, data.stats.mean)
    assert set(summary["test"]["locked"]) >= {"precision", "recall", "f1", "iou"}
    assert model(torch.zeros(1, 13, 128, 128)).shape == (1, 1, 128, 128)


def test_empty_validation_split_is_a_user_error(tmp_path: Path) -> None:
    root = build_official(tmp_path / "o")
    shutil.rmtree(root / "ValidData")
    with pytest.raises(UserError, match="no 'validation' split"):
        prepare_data(detect_layout(root).root, SWEEP_BANDS)
