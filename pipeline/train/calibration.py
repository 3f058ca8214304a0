"""Calibration of landslide probabilities: fitting on held-out logits, and how to measure it.

* :func:`fit_calibration` fits temperature scaling (``sigmoid(z / T)``), Platt scaling
  (``sigmoid(a z + b)``) or beta calibration (``sigmoid(a ln p - b ln(1 - p) + c)``, Kull et al.
  2017, ``a, b >= 0``) to logits and {0, 1} labels by minimising the log loss (L-BFGS), or an
  isotonic map (pool-adjacent-violators on logits rounded to 0.01). Temperature scaling only
  sharpens or flattens; it cannot move the 0.5 crossing, so it cannot undo the shift that
  ``pos_weight`` puts into the logits. Platt's bias can; beta bends the curve differently below
  and above 0.5; isotonic follows any monotone shape.
* :func:`ece` is the expected calibration error over 10 equal-width bins of the predicted
  probability: ``sum_b (n_b / n) * |mean(p in b) - mean(y in b)|``.
* :func:`brier` is the mean squared error of the probability; :func:`brier_skill` is
  ``1 - brier / brier(base rate)``, where the reference predicts the labels' own base rate
  everywhere (0 = no better than a constant, 1 = perfect).
* :func:`max_gap` is the largest ``|observed - mean predicted|`` over the bins holding at least
  1 % of the pixels (the middle of the range, which the pixel-weighted ECE hides).
* :func:`label_shift_check` scores probabilities on pixels subsampled to a lower base rate,
  uncorrected and corrected for it (Saerens et al. 2002).
* :func:`reliability_png` draws the reliability diagram (observed frequency against mean
  predicted probability per bin, with the pixel count per bin).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.models.checkpoint import PROBABILITY_EPS, Calibration, shift_probability

N_BINS = 10


#: Methods :func:`fit_calibration` knows.
METHODS = ("temperature", "platt", "beta", "isotonic")
#: Logit rounding of the isotonic fit (pixels pooled per step before pool-adjacent-violators).
ISOTONIC_STEP = 0.01
#: Smallest share of pixels a bin needs to count in :func:`max_gap`.
GAP_MIN_SHARE = 0.01


def fit_calibration(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer] | NDArray[np.floating],
    method: str,
    fitted_on: str = "",
) -> Calibration:
    """Fit one of :data:`METHODS` (log loss; isotonic by pool-adjacent-violators).

    Args:
        logits: Raw model logits (any shape).
        labels: {0, 1} labels of the same shape.
        method: One of :data:`METHODS`.
        fitted_on: Provenance recorded in the result.

    Returns:
        The fitted :class:`Calibration`, with the labels' base rate recorded.
    """
    if method not in METHODS:
        raise ValueError(f"cannot fit calibration method {method!r}")
    z64 = np.asarray(logits, dtype=np.float64).ravel()
    y64 = np.asarray(labels, dtype=np.float64).ravel()
    rate = float(np.clip(y64.mean(), 1e-6, 1 - 1e-6))
    keys, weight, positives = _pooled(z64, y64)
    if method == "isotonic":
        knots, values = _isotonic(keys, weight, positives)
        return Calibration(method, fitted_on=fitted_on, knots=knots, values=values, base_rate=rate)
    # the log loss of the pixels, summed per rounded logit: exact up to the rounding, ~100x fewer terms
    z = (keys * ISOTONIC_STEP).astype(np.float64)
    frac = positives / weight
    if method == "temperature":
        (scale,) = _logistic(z[:, None], frac, weight)
        return Calibration(method, max(float(scale), 1e-6), 0.0, fitted_on, base_rate=rate)
    if method == "platt":
        scale, bias = _logistic(np.stack([z, np.ones_like(z)], axis=1), frac, weight)
        return Calibration(method, max(float(scale), 1e-6), float(bias), fitted_on, base_rate=rate)
    # beta: features ln p and -ln(1 - p) of p = sigmoid(z); a feature whose weight comes out
    # negative is dropped (its weight 0), as in Kull et al.'s implementation, so the map stays monotone
    features = np.stack([-np.logaddexp(0.0, -z), np.logaddexp(0.0, z), np.ones_like(z)], axis=1)
    keep = [0, 1, 2]
    while True:
        fitted = _logistic(features[:, keep], frac, weight)
        negative = [k for k, v in zip(keep, fitted, strict=True) if k < 2 and v < 0]
        if not negative:
            break
        keep.remove(negative[0])
    params = [0.0, 0.0, 0.0]
    for k, v in zip(keep, fitted, strict=True):
        params[k] = float(v)
    return Calibration(method, fitted_on=fitted_on, params=tuple(params), base_rate=rate)


def _logistic(
    x: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64], iterations: int = 100
) -> NDArray[np.float64]:
    """Weighted logistic regression without intercept (columns of ``x``): Newton with step halving."""
    beta = np.zeros(x.shape[1])

    def loss(b: NDArray[np.float64]) -> float:
        t = x @ b
        return float(np.sum(w * (np.logaddexp(0.0, t) - y * t)))

    current = loss(beta)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (w * (p - y))
        hess = (x * (w * p * (1.0 - p))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-6:
            trial = beta - size * step
            value = loss(trial)
            if value <= current:
                break
            size /= 2
        else:
            break
        converged = current - value < 1e-10 * max(abs(current), 1.0)
        beta, current = trial, value
        if converged:
            break
    return beta


def _pooled(
    z: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Logits rounded to :data:`ISOTONIC_STEP` (integer keys, ascending); pixels and positives per key."""
    keys, inverse = np.unique(np.round(z / ISOTONIC_STEP).astype(np.int64), return_inverse=True)
    return keys, np.bincount(inverse).astype(np.float64), np.bincount(inverse, weights=y).astype(np.float64)


def _isotonic(
    keys: NDArray[np.int64], weight: NDArray[np.float64], total: NDArray[np.float64]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pool-adjacent-violators over the pooled logits; the ends of each step become knots."""
    # blocks: [start key index, end key index, weight, sum]
    starts: list[int] = []
    ends: list[int] = []
    ws: list[float] = []
    sums: list[float] = []
    for i in range(len(keys)):
        starts.append(i)
        ends.append(i)
        ws.append(weight[i])
        sums.append(total[i])
        while len(ws) > 1 and sums[-2] / ws[-2] >= sums[-1] / ws[-1]:
            ends[-2] = ends[-1]
            ws[-2] += ws[-1]
            sums[-2] += sums[-1]
            del starts[-1], ends[-1], ws[-1], sums[-1]
    knots: list[float] = []
    values: list[float] = []
    for s, e, w, t in zip(starts, ends, ws, sums, strict=True):
        value = float(np.clip(t / w, PROBABILITY_EPS, 1 - PROBABILITY_EPS))
        for k in sorted({s, e}):
            knots.append(float(keys[k] * ISOTONIC_STEP))
            values.append(value)
    return tuple(knots), tuple(values)


def ece(prob: NDArray[np.floating], labels: NDArray[np.generic], n_bins: int = N_BINS) -> float:
    """Expected calibration error over ``n_bins`` equal-width probability bins (pixel-weighted)."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    idx = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    return float(np.abs(sum_p - sum_y).sum() / max(p.size, 1))


def brier(prob: NDArray[np.floating], labels: NDArray[np.generic]) -> float:
    """Mean squared difference between probability and label."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    return float(np.mean((p - y) ** 2))


def brier_skill(prob: NDArray[np.floating], labels: NDArray[np.generic]) -> float:
    """``1 - brier / brier(base rate)``; the reference predicts the labels' mean everywhere."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    rate = float(y.mean())
    reference = rate * (1.0 - rate)
    return 1.0 - brier(prob, y) / reference if reference > 0 else 0.0


@dataclass(frozen=True)
class Reliability:
    """Per-bin counts, mean probability and observed frequency (NaN for empty bins)."""

    edges: tuple[float, ...]
    count: tuple[int, ...]
    mean_prob: tuple[float, ...]
    frequency: tuple[float, ...]


def reliability(prob: NDArray[np.floating], labels: NDArray[np.generic], n_bins: int = N_BINS) -> Reliability:
    """The reliability table of ``prob`` against ``labels``."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    idx = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=n_bins) / count
        freq = np.bincount(idx, weights=y, minlength=n_bins) / count
    edges = tuple(float(e) for e in np.linspace(0.0, 1.0, n_bins + 1))
    return Reliability(
        edges, tuple(int(c) for c in count), tuple(float(v) for v in mean_p), tuple(float(v) for v in freq)
    )


def max_gap(
    prob: NDArray[np.floating], labels: NDArray[np.generic], min_share: float = GAP_MIN_SHARE
) -> float:
    """Largest ``|observed - mean predicted|`` over bins holding at least ``min_share`` of the pixels."""
    table = reliability(prob, labels)
    n = max(sum(table.count), 1)
    gaps = [abs(f - m) for c, m, f in zip(table.count, table.mean_prob, table.frequency, strict=True)
            if c >= min_share * n]
    return float(max(gaps)) if gaps else 0.0


def label_shift_check(
    prob: NDArray[np.floating], labels: NDArray[np.generic], fitted_rate: float, target: float, seed: int = 0
) -> dict[str, Any]:
    """Subsample landslide pixels to ``target`` of the pixels; score probabilities uncorrected and corrected.

    Dropping a random share of the positive pixels is a pure label shift (``p(x | y)`` unchanged),
    as in a region with fewer landslides. The corrected probabilities move each calibrated logit
    by ``logit(target) - logit(fitted_rate)`` (Saerens et al. 2002), ``fitted_rate`` being the
    base rate the calibration was fitted at.

    Returns:
        ``observed`` (the subsample's landslide fraction) and :func:`summary` of the
        ``uncorrected`` and ``corrected`` probabilities.
    """
    p = np.asarray(prob, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    pos = y > 0.5
    keep_share = target * (~pos).sum() / ((1.0 - target) * max(int(pos.sum()), 1))
    keep = ~pos | (np.random.default_rng(seed).random(p.size) < min(keep_share, 1.0))
    sub, truth = p[keep], y[keep]
    shift = float(np.log(target / (1 - target)) - np.log(fitted_rate / (1 - fitted_rate)))
    corrected = shift_probability(sub, shift).astype(np.float64)
    return {
        "target": target,
        "fitted_rate": fitted_rate,
        "observed": float(truth.mean()),
        "uncorrected": summary(sub, truth),
        "corrected": summary(corrected, truth),
    }


def summary(prob: NDArray[np.floating], labels: NDArray[np.generic]) -> dict[str, float]:
    """``ece``, ``max_gap``, ``brier``, ``brier_skill``, the base rate and the mean probability."""
    return {
        "ece": ece(prob, labels),
        "max_gap": max_gap(prob, labels),
        "mean_prob": float(np.mean(prob)),
        "brier": brier(prob, labels),
        "brier_skill": brier_skill(prob, labels),
        "base_rate": float(np.asarray(labels, dtype=np.float64).mean()),
    }


def reliability_png(
    path: str | Path,
    curves: dict[str, tuple[NDArray[np.floating], NDArray[np.generic]]],
    title: str,
    threshold: float | None = None,
) -> Path:
    """Write a reliability diagram with one curve per entry of ``curves`` (``label -> (prob, labels)``).

    The top panel plots observed frequency against mean predicted probability per bin (the
    diagonal is perfect calibration) with each curve's ECE in the legend; the bottom panel the
    pixel count per bin (log scale).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 6.4), height_ratios=(3, 1.2), sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
    centres = np.arange(N_BINS) / N_BINS + 0.5 / N_BINS
    width = 0.9 / N_BINS / max(len(curves), 1)
    for i, (label, (prob, truth)) in enumerate(curves.items()):
        table = reliability(prob, truth)
        mean_p, freq = np.asarray(table.mean_prob), np.asarray(table.frequency)
        ok = np.isfinite(mean_p)
        top.plot(mean_p[ok], freq[ok], marker="o", ms=4, label=f"{label} (ECE {ece(prob, truth):.3f})")
        bottom.bar(
            centres - 0.45 / N_BINS + (i + 0.5) * width, np.maximum(table.count, 1), width=width, label=label
        )
    if threshold is not None:
        for ax in (top, bottom):
            ax.axvline(threshold, color="#b2182b", lw=1, ls=":")
        top.text(threshold, 0.02, f" threshold {threshold:.2f}", color="#b2182b", fontsize=8)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed landslide fraction", title=title)
    top.legend(fontsize=8, loc="upper left")
    bottom.set(yscale="log", xlabel="predicted probability (10 equal-width bins)", ylabel="pixels")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
