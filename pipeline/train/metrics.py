"""Landslide-class metrics over *all pixels of a split* and the validation threshold sweep.

Counts (TP, FP, FN, TN) are accumulated over every pixel of every chip of a split and the metrics
computed once from the totals; they are not averages of per-chip scores. A ratio whose
denominator is zero (e.g. precision with no predicted pixel) is reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: Threshold used to choose the checkpoint (validation F1), as in the method.
SELECTION_THRESHOLD = 0.70
#: Thresholds swept on validation after training (0.55 to 0.85, step 0.01).
SWEEP_THRESHOLDS: tuple[float, ...] = tuple(round(0.55 + 0.01 * i, 2) for i in range(31))


@dataclass(frozen=True)
class Scores:
    """Metrics of the landslide class at one threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        """TP / (TP + FP)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN)."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0

    @property
    def iou(self) -> float:
        """TP / (TP + FP + FN)."""
        return self.tp / (self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready dict with counts and metrics."""
        return {
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "iou": self.iou,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


class ConfusionAccumulator:
    """Accumulates pixel counts at several thresholds at once, over a whole split."""

    def __init__(self, thresholds: Sequence[float]) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        n = len(self.thresholds)
        self._tp = np.zeros(n, np.int64)
        self._fp = np.zeros(n, np.int64)
        self._fn = np.zeros(n, np.int64)
        self._tn = np.zeros(n, np.int64)

    def update(self, probabilities: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of probabilities and {0, 1} targets (same shape)."""
        prob = probabilities.detach().float().reshape(-1).cpu()
        truth = target.detach().reshape(-1).cpu() > 0.5
        n_pos = int(truth.sum())
        n_neg = truth.numel() - n_pos
        for i, t in enumerate(self.thresholds):
            pred = prob >= t
            tp = int((pred & truth).sum())
            fp = int(pred.sum()) - tp
            self._tp[i] += tp
            self._fp[i] += fp
            self._fn[i] += n_pos - tp
            self._tn[i] += n_neg - fp

    def scores(self) -> list[Scores]:
        """Scores per threshold, in threshold order given."""
        return [
            Scores(t, int(tp), int(fp), int(fn), int(tn))
            for t, tp, fp, fn, tn in zip(self.thresholds, self._tp, self._fp, self._fn, self._tn, strict=True)
        ]

    def at(self, threshold: float) -> Scores:
        """Scores at one of the accumulated thresholds."""
        for s in self.scores():
            if math.isclose(s.threshold, threshold, abs_tol=1e-9):
                return s
        raise KeyError(f"threshold {threshold} was not accumulated ({self.thresholds})")


def choose_threshold(validation_scores: Iterable[Scores]) -> Scores:
    """The validation threshold with the highest F1; ties go to the threshold closest to 0.70.

    Call only with validation scores: the chosen threshold is then locked for the test split.
    """
    candidates = list(validation_scores)
    if not candidates:
        raise ValueError("no validation scores to choose a threshold from")
    return max(candidates, key=lambda s: (round(s.f1, 12), -abs(s.threshold - SELECTION_THRESHOLD)))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
