"""Calibration: fitting, measures, the reliability diagram, and its home in the checkpoint."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

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


def _meta(**kw: Any) -> CheckpointMeta:
    return CheckpointMeta(
        model="unet",
        config=dict(TINY_UNET),
        bands=tuple(f"b{i}" for i in range(13)),
        norm_mean=(0.0,) * 13,
        norm_std=(1.0,) * 13,
        threshold=0.4,
        **kw,
    )


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


def test_beta_and_isotonic_follow_a_curve_platt_cannot() -> None:
    # the truth bends: below 0.5 one slope, above another, which a two-parameter sigmoid cannot follow
    rng = np.random.default_rng(1)
    z = rng.normal(-2.0, 2.5, 300_000)
    p = np.exp(-np.logaddexp(0.0, -z)) ** 0.5 * 0.6  # a bent, monotone map of z, capped at 0.6
    y = (rng.random(z.size) < p).astype(np.uint8)
    gaps = {}
    for method in cal.METHODS:
        fitted = cal.fit_calibration(z, y, method)
        prob = fitted.probabilities(torch.from_numpy(z)).double().numpy()
        gaps[method] = cal.max_gap(prob, y)
        assert fitted.base_rate == pytest.approx(y.mean())
    assert gaps["isotonic"] < 0.02 and gaps["beta"] < gaps["platt"] and gaps["platt"] > 0.03
    iso = cal.fit_calibration(z, y, "isotonic")
    assert list(iso.knots) == sorted(iso.knots) and list(iso.values) == sorted(iso.values)


def test_beta_recovers_platt_when_the_truth_is_platt() -> None:
    z, y = _synthetic(0.6, -2.0)
    a, b, c = cal.fit_calibration(z, y, "beta").params
    # a ln p - b ln(1 - p) + c with a = b = s is s z + c
    assert a == pytest.approx(0.6, abs=0.05) and b == pytest.approx(0.6, abs=0.05)
    assert c == pytest.approx(-2.0, abs=0.1)


def test_max_gap_counts_only_bins_with_one_percent_of_the_pixels() -> None:
    prob = np.r_[np.full(990, 0.05), np.full(10, 0.95)]
    labels = np.r_[np.zeros(940), np.ones(50), np.zeros(10)]  # bin 0: 0.05 vs 0.0505; bin 9: 0.95 vs 0
    assert cal.max_gap(prob, labels) == pytest.approx(0.95)
    assert cal.max_gap(prob, labels, min_share=0.02) == pytest.approx(abs(0.05 - 50 / 990))


@pytest.mark.parametrize(
    "calibration",
    [
        Calibration("beta", params=(0.8, 1.3, -2.0), base_rate=0.04),
        Calibration("isotonic", knots=(-3.0, 0.0, 2.0), values=(0.0, 0.3, 1.0), base_rate=0.04),
    ],
)
def test_beta_and_isotonic_round_trip_in_the_checkpoint(tmp_path: Path, calibration: Calibration) -> None:
    model = build_model("unet", TINY_UNET)
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), _meta(calibration=calibration))
    _, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta.calibration == calibration
    z = torch.linspace(-6, 6, 49)
    prob = calibrated_probabilities(z, meta)
    assert bool((prob[1:] >= prob[:-1]).all()) and bool(((prob > 0) & (prob < 1)).all())
    if calibration.method == "isotonic":  # linear between knots, constant beyond
        torch.testing.assert_close(calibration.probabilities(torch.tensor([-1.5, 1.0, 9.0])),
                                   torch.tensor([0.15, 0.65, 1 - 1e-6]))  # fmt: skip
    else:
        p = torch.sigmoid(z)
        expected = torch.sigmoid(0.8 * torch.log(p) - 1.3 * torch.log1p(-p) - 2.0)
        torch.testing.assert_close(prob, expected, atol=1e-5, rtol=1e-4)


def test_a_checkpoint_written_before_beta_and_isotonic_still_loads(tmp_path: Path) -> None:
    # the calibration record as older files hold it: four keys, no base rate
    meta = _meta(calibration=Calibration("platt", 2.0, -3.0, "old"))
    raw = json.loads(meta.to_json())
    raw["calibration"] = {"method": "platt", "scale": 2.0, "bias": -3.0, "fitted_on": "old"}
    loaded = CheckpointMeta.from_json(json.dumps(raw))
    assert loaded.calibration == Calibration("platt", 2.0, -3.0, "old")
    assert loaded.calibration.base_rate is None
    with pytest.raises(CheckpointError, match="no training base rate"):
        loaded.calibration.prior_shift(0.005)
    assert loaded.calibration.prior_shift(None) == 0.0


def test_bad_beta_and_isotonic_records_are_checkpoint_errors() -> None:
    with pytest.raises(CheckpointError, match="beta"):
        Calibration("beta", params=(-1.0, 1.0, 0.0))
    with pytest.raises(CheckpointError, match="isotonic"):
        Calibration("isotonic", knots=(0.0, 1.0), values=(0.5, 0.2))
    with pytest.raises(CheckpointError, match="base rate"):
        Calibration("platt", base_rate=1.5)


def test_prior_shift_is_the_saerens_correction() -> None:
    c = Calibration("platt", 1.0, 0.0, base_rate=0.04)
    z = torch.tensor([-4.0, -1.0, 0.0, 2.0])
    p, q = c.probabilities(z).double(), c.probabilities(z, base_rate=0.005).double()
    # Saerens et al. 2002: q = (r'/r) p / ((r'/r) p + ((1 - r')/(1 - r)) (1 - p))
    ratio, other = 0.005 / 0.04, 0.995 / 0.96
    torch.testing.assert_close(q, ratio * p / (ratio * p + other * (1 - p)), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c.probabilities(z, base_rate=0.04), c.probabilities(z))


def test_corrected_probabilities_stay_calibrated_at_a_lower_base_rate() -> None:
    # calibrated probabilities at the sample's base rate (about 20 %); the region has 0.5 %
    z, y = _synthetic(1.0, -1.0)
    rate = float(y.mean())
    prob = cal.fit_calibration(z, y, "platt").probabilities(torch.from_numpy(z)).double().numpy()
    check = cal.label_shift_check(prob, y, rate, 0.005)
    assert check["observed"] == pytest.approx(0.005, rel=0.1)
    assert check["uncorrected"]["mean_prob"] > 4 * check["observed"]  # overstates
    assert check["uncorrected"]["ece"] > 0.02
    assert check["corrected"]["mean_prob"] == pytest.approx(check["observed"], rel=0.25)
    assert check["corrected"]["ece"] < 0.005
