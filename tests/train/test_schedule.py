"""The two-stage schedule, early stopping and resume at the stage-1 -> stage-2 boundary (tiny hybrid)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.bands import SWEEP_BANDS
from pipeline.train.config import TrainConfig
from pipeline.train.data import ChipSet, band_statistics, detect_layout
from pipeline.train.loop import STATE_FILE, fit

from .conftest import TINY_UNET

TINY_HYBRID = {"bands": list(SWEEP_BANDS), "widths": [4, 8, 16, 32], "clay": {"size": "tiny"}}
HYBRID = TrainConfig(
    "hybrid",
    TINY_HYBRID,
    seed=3,
    epochs=4,
    stage1_epochs=2,
    patience=10,
    batch_size=2,
    lr=3e-3,
    stage2_lr=3e-3,
    lora_lr=1e-2,
    crop=32,
    progress=False,
)


@pytest.fixture(scope="module")
def sets(sample_dir: Path) -> tuple[ChipSet, ChipSet]:
    layout = detect_layout(sample_dir, {"train": [28, 512], "validation": [41]})
    stats = band_statistics(layout.chips("train"), SWEEP_BANDS)
    return (
        ChipSet(layout.chips("train"), SWEEP_BANDS, stats),
        ChipSet(layout.chips("validation"), SWEEP_BANDS, stats),
    )


def test_two_stages_freeze_clay_then_train_lora(sets, tmp_path: Path) -> None:
    result = fit(HYBRID, *sets, tmp_path / "run")
    assert [row["stage"] for row in result.history] == [1, 1, 2, 2]
    assert len(result.history[0]["lr"]) == 1 and len(result.history[2]["lr"]) == 2  # LoRA group in stage 2
    state = torch.load(tmp_path / "run" / STATE_FILE, weights_only=True)["model"]
    assert any("lora" in key for key in state)


def test_patience_restarts_when_stage_two_begins(sets, tmp_path: Path) -> None:
    # lr 0: the model never changes, so validation F1 never improves after epoch 1
    frozen = replace(HYBRID, epochs=8, stage1_epochs=3, patience=2, lr=0.0, stage2_lr=0.0, lora_lr=0.0)
    result = fit(frozen, *sets, tmp_path / "run")
    # stage 1 never stops the run; stage 2 gets its full patience (2 epochs), then stops
    assert [row["stage"] for row in result.history] == [1, 1, 1, 2, 2]
    assert result.best_epoch == 1


def test_early_stopping_of_a_single_stage_model(sets, tmp_path: Path) -> None:
    config = TrainConfig("unet", TINY_UNET, seed=1, epochs=10, patience=2, lr=0.0, crop=32, progress=False)
    result = fit(config, *sets, tmp_path / "run")
    assert result.epochs_run == 3 and result.best_epoch == 1


def test_resume_at_the_stage_boundary_equals_an_uninterrupted_run(sets, tmp_path: Path) -> None:
    full = fit(HYBRID, *sets, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):  # killed right after the last stage-1 epoch
        fit(HYBRID, *sets, tmp_path / "killed", stop_after_epochs=HYBRID.stage1_epochs)
    # something else draws from the global RNGs before the resumed process reaches stage 2
    torch.manual_seed(12345)
    torch.rand(100)
    resumed = fit(HYBRID, *sets, tmp_path / "killed", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    a = torch.load(tmp_path / "full" / STATE_FILE, weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / STATE_FILE, weights_only=True)["model"]
    lora = [k for k in a if "lora" in k]
    assert lora
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert full.best_epoch == resumed.best_epoch


def test_training_without_validation_keeps_the_last_epoch(sets, tmp_path: Path) -> None:
    config = TrainConfig(
        "unet", TINY_UNET, seed=1, epochs=2, lr=3e-3, crop=32, radiometric=1.0, progress=False
    )
    result = fit(config, sets[0], None, tmp_path / "run")
    assert result.epochs_run == 2 and result.best_epoch == 2
    last = torch.load(tmp_path / "run" / STATE_FILE, weights_only=True)["model"]
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(value, last[key])
