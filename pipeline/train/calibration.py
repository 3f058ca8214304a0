"""Calibration of landslide probabilities: fitting on held-out logits, and how to measure it.

* :func:`fit_calibration` fits temperature scaling (``sigmoid(z / T)``) or Platt scaling
  (``sigmoid(a z + b)``) to logits and {0, 1} labels by minimising the log loss (L-BFGS).
  Temperature scaling only sharpens or flattens; it cannot move the 0.5 crossing, so it cannot
  undo the shift that ``pos_weight`` puts into the logits. Platt's bias can.
* :func:`ece` is the expected calibration error over 10 equal-width bins of the predicted
  probability: ``sum_b (n_b / n) * |mean(p in b) - mean(y in b)|``.
* :func:`brier` is the mean squared error of the probability; :func:`brier_skill` is
  ``1 - brier / brier(base rate)``, where the reference predicts the labels' own base rate
  everywhere (0 = no better than a constant, 1 = perfect).
* :func:`reliability_png` draws the reliability diagram (observed frequency against mean
  predicted probability per bin, with the pixel count per bin).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from pipeline.models.checkpoint import Calibration

N_BINS = 10


def fit_calibration(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer] | NDArray[np.floating],
    method: str,
    fitted_on: str = "",
) -> Calibration:
    """Fit ``temperature`` or ``platt`` scaling by minimising the mean log loss.

    Args:
        logits: Raw model logits (any shape).
        labels: {0, 1} labels of the same shape.
        method: ``temperature`` or ``platt``.
        fitted_on: Provenance recorded in the result.

    Returns:
        The fitted :class:`Calibration`.
    """
    if method not in ("temperature", "platt"):
        raise ValueError(f"cannot fit calibration method {method!r}")
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64).ravel())
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64).ravel())
    log_scale = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=method == "platt")
    params = [log_scale, bias] if method == "platt" else [log_scale]
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z * log_scale.exp() + bias, y)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return Calibration(
        method, float(log_scale.detach().exp()), float(bias.detach()) if method == "platt" else 0.0, fitted_on
    )


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


def summary(prob: NDArray[np.floating], labels: NDArray[np.generic]) -> dict[str, float]:
    """``ece``, ``brier``, ``brier_skill`` and the base rate."""
    return {
        "ece": ece(prob, labels),
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
