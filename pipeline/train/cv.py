"""k-fold cross-validation over a small pool of chips: out-of-fold scores, the rule, calibration.

Used to choose the shipped model's recipe and to fit its calibration and threshold on the 15
real L4S sample chips, where a single 9/3/3 split is far too noisy:

* :func:`stratified_folds`: chips sorted by landslide pixel count, cut into groups of ``k``
  consecutive chips, each group dealt to the ``k`` folds in a seeded random order; so every fold
  gets one chip of every stratum (the two empty chips land in different folds), folds are
  disjoint and cover the pool.
* :func:`run_cv`: for each fold, the normalisation statistics and the model come from the other
  folds only; the model trains a fixed number of epochs (no selection on the held fold); the
  held chips' logits are kept (also with inputs shifted the Level-2A way). The NDVI + slope rule
  is tuned on the same training chips and scored on the held chips.
* :func:`analyse`: pooled out-of-fold precision/recall/F1/IoU; temperature and Platt scaling
  fitted on the pooled OOF logits, with a *cross-fitted* estimate (each fold calibrated by a map
  fitted on the other folds' logits) so the reported ECE is not measured on the data it was
  fitted on; the threshold that maximises OOF F1 of calibrated probabilities.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.bands import SWEEP_BANDS
from pipeline.models.checkpoint import Calibration
from pipeline.train import calibration as cal
from pipeline.train.config import TrainConfig
from pipeline.train.data import ChipSet, band_statistics, detect_layout, read_mask
from pipeline.train.domain import l2a_like
from pipeline.train.loop import fit, logit_batches
from pipeline.train.losses import LossConfig
from pipeline.train.metrics import ConfusionAccumulator, Scores
from pipeline.train.rule import fit_rule, score_rule

log = logging.getLogger(__name__)

#: Thresholds scanned on OOF calibrated probabilities.
OOF_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))


@dataclass(frozen=True)
class Recipe:
    """How a narrow U-Net is trained on a few chips (one home for the shipped model's defaults).

    Attributes:
        widths: U-Net widths.
        epochs: Fixed number of epochs (no early stopping: nothing is held out to stop on).
        repeats: Augmented passes over the training chips per epoch.
        crop: Training window (px) cut from each augmented chip (prediction uses whole chips).
        lr: AdamW learning rate (cosine schedule over ``epochs``).
        pos_weight: BCE weight of landslide pixels.
        lovasz_weight: Weight of the Lovasz hinge (BCE gets ``1 - lovasz_weight``).
        intensity_jitter: Per-channel gain/offset jitter (z units).
        radiometric: Largest fraction of the L1C -> L2A shift drawn per training chip.
        terrain: ``sweep`` (slope recomputed with the sweep's operator) or ``l4s``.
        dropout: U-Net dropout.
        seed: Seed of initialisation, shuffling and augmentation.
    """

    widths: tuple[int, ...] = (8, 16, 32, 64)
    epochs: int = 20
    repeats: int = 8
    crop: int = 64
    lr: float = 1e-3
    pos_weight: float = 25.0
    lovasz_weight: float = 0.1
    intensity_jitter: float = 0.05
    radiometric: float = 1.0
    terrain: str = "sweep"
    dropout: float = 0.1
    seed: int = 42

    def train_config(self, bands: Sequence[str] = SWEEP_BANDS) -> TrainConfig:
        """The :class:`TrainConfig` of this recipe."""
        return TrainConfig(
            model="unet",
            model_config={"in_channels": len(bands), "widths": list(self.widths), "dropout": self.dropout},
            seed=self.seed,
            epochs=self.epochs,
            batch_size=8,
            lr=self.lr,
            patience=self.epochs,
            repeats=self.repeats,
            crop=self.crop,
            intensity_jitter=self.intensity_jitter,
            radiometric=self.radiometric,
            loss=LossConfig(
                bce_weight=1.0 - self.lovasz_weight,
                lovasz_weight=self.lovasz_weight,
                pos_weight=self.pos_weight,
            ),
            progress=False,
        )


def stratified_folds(pixel_counts: dict[int, int], k: int = 5, seed: int = 0) -> list[list[int]]:
    """Deal chips to ``k`` folds, stratified by landslide pixel count (see the module doc).

    Returns:
        ``k`` sorted lists of chip ids, disjoint, together the whole pool.
    """
    if k < 2 or k > len(pixel_counts):
        raise ValueError(f"cannot make {k} folds of {len(pixel_counts)} chips")
    ordered = sorted(pixel_counts, key=lambda i: (pixel_counts[i], i))
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for start in range(0, len(ordered), k):
        group = ordered[start : start + k]
        for chip_id, fold in zip(group, rng.permutation(k)[: len(group)], strict=True):
            folds[int(fold)].append(chip_id)
    return [sorted(f) for f in folds]


@dataclass
class OofPredictions:
    """Out-of-fold logits of every chip (clean and L2A-shifted inputs), labels and fold index."""

    chip_ids: list[int] = field(default_factory=list)
    fold: list[int] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    logits_l2a: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Stacked arrays ``[N, 128, 128]`` (and ``chip_ids``, ``fold`` of length N)."""
        return {
            "chip_ids": np.asarray(self.chip_ids),
            "fold": np.asarray(self.fold),
            "logits": np.stack(self.logits),
            "logits_l2a": np.stack(self.logits_l2a),
            "labels": np.stack(self.labels),
        }


def run_cv(
    recipe: Recipe,
    data_dir: str | Path,
    out: str | Path,
    k: int = 5,
    resume: bool = False,
    device: torch.device | None = None,
    only: Sequence[int] | None = None,
    held_terrain: str | None = None,
) -> dict[str, Any]:
    """Train ``k`` fold models with ``recipe``, collect OOF logits, tune and score the rule per fold.

    ``only`` restricts the run to some folds (a partial comparison: the pooled scores then cover
    only their held chips). Writes ``out/oof.npz`` and ``out/cv.json`` and returns the analysis
    (see :func:`analyse`) with per-fold details. ``held_terrain`` feeds the held chips a slope
    made another way than the training chips' (a model trained on the L4S slope channel, fed the
    sweep's slope as a sweep would); the rule keeps the recipe's terrain.
    """
    device = device or torch.device("cpu")
    out = Path(out)
    pool = detect_layout(data_dir, None)
    everything = {c.chip_id: c for chips in pool.splits.values() for c in chips}
    counts = {i: int(read_mask(c).sum()) for i, c in everything.items()}
    folds = stratified_folds(counts, k)
    bands = tuple(SWEEP_BANDS)
    oof = OofPredictions()
    rule_acc = ConfusionAccumulator((0.5,))
    per_fold: list[dict[str, Any]] = []
    started = time.monotonic()
    for f, held in enumerate(folds):
        if only is not None and f not in only:
            continue
        train_ids = sorted(i for i in everything if i not in held)
        train_chips = [everything[i] for i in train_ids]
        held_chips = [everything[i] for i in held]
        stats = band_statistics(train_chips, bands, recipe.terrain)
        train_set = ChipSet(train_chips, bands, stats, recipe.terrain)
        held_set = ChipSet(held_chips, bands, stats, held_terrain or recipe.terrain)
        result = fit(
            recipe.train_config(bands), train_set, None, out / f"fold_{f}", resume=resume, device=device
        )
        shifted = l2a_like(held_set.images, bands, stats.mean, stats.std, 1.0)
        clean = torch.cat([z for z, _ in logit_batches(result.model, held_set, 8, device)])
        moved = torch.cat([z for z, _ in logit_batches(result.model, held_set, 8, device, images=shifted)])
        for j, chip_id in enumerate(held):
            oof.chip_ids.append(chip_id)
            oof.fold.append(f)
            oof.logits.append(clean[j, 0].numpy())
            oof.logits_l2a.append(moved[j, 0].numpy())
            oof.labels.append(held_set.masks[j, 0].numpy().astype(np.uint8))
        rule, _ = fit_rule(train_chips, recipe.terrain)
        rule_scores = score_rule(rule, held_chips, recipe.terrain)
        _add(rule_acc, rule_scores)
        per_fold.append(
            {
                "fold": f,
                "held": held,
                "rule": {
                    "ndvi_max": rule.ndvi_max,
                    "slope_min_deg": rule.slope_min,
                    "held": rule_scores.as_dict(),
                },
            }
        )
        log.info("fold %d/%d done (%.1f min)", f + 1, k, (time.monotonic() - started) / 60)
    arrays = oof.arrays()
    np.savez_compressed(out / "oof.npz", **arrays)  # type: ignore[arg-type]
    analysis = analyse(arrays)
    analysis |= {
        "recipe": asdict(recipe),
        "folds": folds,
        "per_fold": per_fold,
        "folds_used": sorted(set(oof.fold)),
        "rule": rule_acc.at(0.5).as_dict(),
        "minutes": round((time.monotonic() - started) / 60, 2),
    }
    (out / "cv.json").write_text(json.dumps(analysis, indent=2, sort_keys=True))
    return analysis


def _add(acc: ConfusionAccumulator, scores: Scores) -> None:
    acc._tp[0] += scores.tp
    acc._fp[0] += scores.fp
    acc._fn[0] += scores.fn
    acc._tn[0] += scores.tn


def scores_at(prob: np.ndarray, labels: np.ndarray, thresholds: Sequence[float]) -> list[Scores]:
    """Pooled pixel scores of ``prob`` at each threshold."""
    acc = ConfusionAccumulator(thresholds)
    acc.update(
        torch.from_numpy(np.asarray(prob, np.float32)), torch.from_numpy(np.asarray(labels, np.float32))
    )
    return acc.scores()


def best_threshold(prob: np.ndarray, labels: np.ndarray) -> Scores:
    """The threshold of :data:`OOF_THRESHOLDS` with the highest pooled F1 (ties: the lower one)."""
    return max(scores_at(prob, labels, OOF_THRESHOLDS), key=lambda s: (round(s.f1, 12), -s.threshold))


def cross_fitted(logits: np.ndarray, labels: np.ndarray, fold: np.ndarray, method: str) -> np.ndarray:
    """Probabilities where each fold's logits are calibrated by a map fitted on the other folds."""
    prob = np.empty(logits.shape, np.float64)
    for f in np.unique(fold):
        mine = fold == f
        fitted = cal.fit_calibration(logits[~mine], labels[~mine], method)
        prob[mine] = fitted.probabilities(torch.from_numpy(logits[mine])).double().numpy()
    return prob


def analyse(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Pooled OOF metrics before and after calibration, the chosen calibration and threshold.

    The shipped calibration is the method (temperature or Platt) with the lower cross-fitted
    ECE, refitted on all OOF logits; the threshold maximises OOF F1 of those calibrated
    probabilities. Scores under the L2A shift use the same calibration and threshold.
    """
    z, y, fold = arrays["logits"].astype(np.float64), arrays["labels"], arrays["fold"]
    folds = np.broadcast_to(fold[:, None, None], z.shape)
    raw = 1.0 / (1.0 + np.exp(-z))
    report: dict[str, Any] = {
        "raw": cal.summary(raw, y)
        | {"best": best_threshold(raw, y).as_dict(), "at_0.5": scores_at(raw, y, (0.5,))[0].as_dict()}
    }
    candidates: dict[str, Calibration] = {}
    for method in ("temperature", "platt"):
        crossed = cross_fitted(z, y, folds, method)
        fitted = cal.fit_calibration(z, y, method, fitted_on="out-of-fold logits, 5-fold CV")
        prob = fitted.probabilities(torch.from_numpy(z)).double().numpy()
        report[method] = {
            "cross_fitted": cal.summary(crossed, y),
            "in_sample": cal.summary(prob, y),
            "scale": fitted.scale,
            "bias": fitted.bias,
        }
        candidates[method] = fitted
    chosen = min(candidates, key=lambda m: report[m]["cross_fitted"]["ece"])
    calibration = candidates[chosen]
    prob = calibration.probabilities(torch.from_numpy(z)).double().numpy()
    locked = best_threshold(prob, y)
    prob_l2a = calibration.probabilities(torch.from_numpy(arrays["logits_l2a"])).double().numpy()
    crossed_prob = cross_fitted(z, y, folds, chosen)
    report |= {
        "calibration": asdict(calibration),
        "chosen_method": chosen,
        "threshold": locked.threshold,
        "calibrated": cal.summary(prob, y)
        | {"locked": locked.as_dict(), "at_0.5": scores_at(prob, y, (0.5,))[0].as_dict()},
        "cross_fitted": cal.summary(crossed_prob, y)
        | {"locked": scores_at(crossed_prob, y, (locked.threshold,))[0].as_dict()},
        "l2a_shifted": cal.summary(prob_l2a, y)
        | {"locked": scores_at(prob_l2a, y, (locked.threshold,))[0].as_dict()},
    }
    return report
