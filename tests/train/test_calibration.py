"""Calibration: fitting, measures, the reliability diagram, and its home in the checkpoint."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.models.checkpoint import (
    Calibration,
    CheckpointError,
    CheckpointMeta,
    calibrated_probabilities,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from pipeline.models.registry import build_model
from pipeline.train import calibration as cal
from pipeline.train.cv import stratified_folds

from .conftest import TINY_UNET


def _synthetic(scale: float, bias: float, n: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.0, 2.5, n)
    p_true = 1.0 / (1.0 + np.exp(-(scale * z + bias)))
    return z, (rng.random(n) < p_true).astype(np.uint8)


def test_platt_recovers_the_generating_map_and_fixes_the_calibration() -> None:
    z, y = _synthetic(0.6, -2.0)
    fitted = cal.fit_calibration(z, y, "platt")
    assert fitted.scale == pytest.approx(0.6, abs=0.03) and fitted.bias == pytest.approx(-2.0, abs=0.06)
    raw = 1.0 / (1.0 + np.exp(-z))
    calibrated = fitted.probabilities(torch.from_numpy(z)).double().numpy()
    assert cal.ece(raw, y) > 0.1  # what pos_weight-style inflated logits look like
    assert cal.ece(calibrated, y) < 0.01
    assert cal.brier_skill(calibrated, y) > cal.brier_skill(raw, y)


def test_temperature_has_no_bias() -> None:
    z, y = _synthetic(0.5, 0.0, seed=1)
    fitted = cal.fit_calibration(z, y, "temperature")
    assert fitted.method == "temperature" and fitted.bias == 0.0
    assert fitted.scale == pytest.approx(0.5, abs=0.03)


def test_ece_and_brier_by_hand() -> None:
    prob = np.array([0.05, 0.05, 0.95, 0.95, 0.55])
    y = np.array([0, 0, 1, 0, 1])
    # bins: [0.0,0.1) p 0.05 y 0 (n 2); [0.9,1.0] p 0.95 y 0.5 (n 2); [0.5,0.6) p 0.55 y 1 (n 1)
    assert cal.ece(prob, y) == pytest.approx((2 * 0.05 + 2 * 0.45 + 1 * 0.45) / 5)
    assert cal.brier(prob, y) == pytest.approx(np.mean((prob - y) ** 2))
    base = np.full(5, y.mean())
    assert cal.brier_skill(base, y) == pytest.approx(0.0)
    assert cal.brier_skill(y.astype(float), y) == pytest.approx(1.0)


def test_reliability_png(tmp_path: Path) -> None:
    z, y = _synthetic(1.0, 0.0, n=5000)
    prob = 1.0 / (1.0 + np.exp(-z))
    out = cal.reliability_png(tmp_path / "r.png", {"a": (prob, y)}, "test", threshold=0.4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def _meta(**kw: object) -> CheckpointMeta:
    return CheckpointMeta(
        model="unet",
        config=dict(TINY_UNET),
        bands=tuple(f"b{i}" for i in range(13)),
        norm_mean=(0.0,) * 13,
        norm_std=(1.0,) * 13,
        threshold=0.4,
        **kw,
    )  # type: ignore[arg-type]


def test_calibration_round_trip_in_the_checkpoint(tmp_path: Path) -> None:
    model = build_model("unet", TINY_UNET)
    calibration = Calibration("platt", 0.7, -3.1, "out-of-fold logits")
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), _meta(calibration=calibration))
    assert read_meta(tmp_path / "c.safetensors").calibration == calibration
    loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    x = torch.randn(1, 13, 32, 32)
    with torch.no_grad():
        logits = loaded(x)
    expected = torch.sigmoid(0.7 * logits - 3.1)
    torch.testing.assert_close(calibrated_probabilities(logits, meta), expected)


def test_old_checkpoint_loads_with_identity_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = build_model("unet", TINY_UNET)
    save_checkpoint(tmp_path / "old.safetensors", model.state_dict(), _meta())
    with caplog.at_level(logging.WARNING):
        _, meta = load_checkpoint(tmp_path / "old.safetensors")
    assert meta.calibration is None and "no calibration" in caplog.text
    logits = torch.randn(4)
    torch.testing.assert_close(calibrated_probabilities(logits, meta), torch.sigmoid(logits))


def test_bad_calibration_is_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="unknown calibration"):
        Calibration("isotonic-ish")
    with pytest.raises(CheckpointError, match="scale"):
        replace(Calibration(), scale=-1.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=5, max_size=40), st.integers(2, 5), st.integers(0, 99))
def test_folds_are_disjoint_cover_the_pool_and_are_stratified(counts: list[int], k: int, seed: int) -> None:
    pool = {i * 7 + 1: c for i, c in enumerate(counts)}
    if k > len(pool):
        return
    folds = stratified_folds(pool, k, seed)
    flat = [i for f in folds for i in f]
    assert sorted(flat) == sorted(pool) and len(flat) == len(set(flat))
    ordered = sorted(pool, key=lambda i: (pool[i], i))
    for start in range(0, len(ordered), k):  # every stratum of k chips is spread over k folds
        stratum = set(ordered[start : start + k])
        assert all(len(stratum & set(f)) <= 1 for f in folds)


def test_the_sample_folds_separate_the_empty_chips() -> None:
    counts = {
        3: 0,
        45: 0,
        72: 34,
        525: 39,
        800: 107,
        40: 151,
        16: 186,
        253: 264,
        600: 272,
        38: 297,
        1: 405,
        28: 951,
        300: 969,
        41: 1074,
        512: 4837,
    }
    folds = stratified_folds(counts, 5)
    assert [len(f) for f in folds] == [3] * 5
    assert not any({3, 45} <= set(f) for f in folds)
