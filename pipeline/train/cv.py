"""Nested k-fold cross-validation over a small pool of chips: every choice made inside the fold.

Used to choose the shipped model's recipe and to fit its calibration and threshold on the 15
real L4S sample chips, where a single 9/3/3 split is far too noisy:

* :func:`stratified_folds`: chips sorted by landslide pixel count, cut into groups of ``k``
  consecutive chips, each group dealt to the ``k`` folds in a seeded random order; so every fold
  gets one chip of every stratum (the two empty chips land in different folds), folds are
  disjoint and cover the pool.
* :func:`run_cv`: the **outer** models: for each fold ``f`` a model trained on the other folds
  (statistics from those chips only) predicts the held chips (also with inputs shifted the
  Level-2A way, and averaged over the 8 flips and turns). The **inner** models: for each pair of
  folds ``{f, g}`` a model trained on the remaining ``k - 2`` folds predicts the chips of ``f``
  and of ``g``. For outer fold ``f``, the inner models ``{f, g}`` (``g != f``) are exactly an
  inner ``k - 1``-fold cross-validation of ``f``'s training chips: their predictions are
  out-of-fold logits of those chips from models that never saw fold ``f``. So each pair model
  serves two outer folds, and a nested run costs ``k + k (k - 1) / 2`` trainings (15 for k = 5),
  not ``k + k (k - 1)``. The NDVI + slope rule is tuned on each outer fold's training chips.
* :mod:`pipeline.train.nested` chooses the calibration map and the threshold of outer fold ``f``
  from the inner logits of its training chips only, and scores the outer logits of its held
  chips with them: the pooled table is out of fold in every choice.
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
from pipeline.train.config import TrainConfig
from pipeline.train.data import ChipSet, band_statistics, detect_layout, read_mask
from pipeline.train.domain import l2a_like
from pipeline.train.loop import fit
from pipeline.train.losses import LossConfig
from pipeline.train.metrics import ConfusionAccumulator, Scores
from pipeline.train.rule import fit_rule, score_rule

log = logging.getLogger(__name__)

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
        swa_epochs: Average the weights of the last ``swa_epochs`` epochs into the result
            (:attr:`TrainConfig.swa_epochs <pipeline.train.config.TrainConfig>`; 0: off).
        swa_lr: Constant learning rate inside the averaging window (None keeps the cosine).
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
    swa_epochs: int = TrainConfig.swa_epochs
    swa_lr: float | None = TrainConfig.swa_lr

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
            swa_epochs=self.swa_epochs,
            swa_lr=self.swa_lr,
            loss=LossConfig(
                bce_weight=1.0 - self.lovasz_weight,
                lovasz_weight=self.lovasz_weight,
                pos_weight=self.pos_weight,
            ),
            progress=False,
        )


#: The recipe of the shipped checkpoint: the search's baseline (:class:`Recipe`'s defaults) with
#: the stronger per-channel jitter that won the search (nested OOF F1 0.695 against 0.658,
#: docs/model.md "Recipe search"). ``python -m pipeline.train.ship`` uses it by default.
SHIPPED_RECIPE = Recipe(intensity_jitter=0.15)


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
    """Outer and inner out-of-fold logits of every chip, labels and fold index.

    ``inner[c][o]`` is chip ``c``'s logit from the model trained without its own fold and fold
    ``o`` (NaN where ``o`` is its own fold): the inner cross-validation of outer fold ``o``.
    ``*_tta`` are the same logits averaged over the 8 flips and 90-degree turns.
    """

    chip_ids: list[int] = field(default_factory=list)
    fold: list[int] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    logits_tta: list[np.ndarray] = field(default_factory=list)
    logits_l2a: list[np.ndarray] = field(default_factory=list)
    inner: list[np.ndarray] = field(default_factory=list)
    inner_tta: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Stacked arrays: ``[N, 128, 128]`` logits and labels, ``[N, k, 128, 128]`` inner logits."""
        order = np.argsort(self.chip_ids, kind="stable")
        return {
            "chip_ids": np.asarray(self.chip_ids)[order],
            "fold": np.asarray(self.fold)[order],
            "logits": np.stack(self.logits)[order],
            "logits_tta": np.stack(self.logits_tta)[order],
            "logits_l2a": np.stack(self.logits_l2a)[order],
            "inner": np.stack(self.inner)[order],
            "inner_tta": np.stack(self.inner_tta)[order],
            "labels": np.stack(self.labels)[order],
        }


@torch.no_grad()
def tta_logits(model: torch.nn.Module, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Logits averaged over the 8 flips and 90-degree turns of ``images`` ``[N, C, H, W]``.

    Each transformed prediction is transformed back before averaging (square chips only).
    """
    model.eval()
    total = torch.zeros((images.shape[0], 1, *images.shape[-2:]))
    for flip in (False, True):
        for k in range(4):
            x = images.flip(-1) if flip else images
            x = torch.rot90(x, k, (-2, -1))
            z = torch.cat([model(x[i : i + batch]).float() for i in range(0, len(x), batch)])
            z = torch.rot90(z, -k, (-2, -1))
            total += z.flip(-1) if flip else z
    return total / 8.0


@torch.no_grad()
def plain_logits(model: torch.nn.Module, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Logits of ``images`` ``[N, C, H, W]`` in eval mode, in batches."""
    model.eval()
    return torch.cat([model(images[i : i + batch]).float() for i in range(0, len(images), batch)])


def run_cv(
    recipe: Recipe,
    data_dir: str | Path,
    out: str | Path,
    k: int = 5,
    resume: bool = False,
    device: torch.device | None = None,
    held_terrain: str | None = None,
    inner_models: bool = True,
) -> dict[str, Any]:
    """Train the outer and inner models of a nested ``k``-fold CV; collect their logits; analyse.

    ``inner_models=False`` trains the ``k`` outer models only (a screening run: the analysis then
    chooses each fold's map and threshold on the other folds' outer logits, cross-fitted but not
    nested).

    Writes ``out/oof.npz`` (see :class:`OofPredictions`) and ``out/cv.json`` and returns the
    analysis (:func:`pipeline.train.nested.analyse`) with per-fold details. ``held_terrain``
    feeds the held chips a slope made another way than the training chips' (a model trained on
    the L4S slope channel, fed the sweep's slope as a sweep would); the rule keeps the recipe's
    terrain.
    """
    from pipeline.train.nested import analyse

    device = device or torch.device("cpu")
    out = Path(out)
    pool = detect_layout(data_dir, None)
    everything = {c.chip_id: c for chips in pool.splits.values() for c in chips}
    counts = {i: int(read_mask(c).sum()) for i, c in everything.items()}
    folds = stratified_folds(counts, k)
    fold_of = {c: f for f, held in enumerate(folds) for c in held}
    bands = tuple(SWEEP_BANDS)
    config = recipe.train_config(bands)
    outer: dict[int, dict[str, np.ndarray]] = {}
    inner: dict[int, np.ndarray] = {}
    inner_tta: dict[int, np.ndarray] = {}
    labels: dict[int, np.ndarray] = {}
    rule_acc = ConfusionAccumulator((0.5,))
    per_fold: list[dict[str, Any]] = []
    started = time.monotonic()

    def train(left_out: tuple[int, ...]) -> tuple[torch.nn.Module, Any]:
        train_chips = [everything[i] for i in sorted(everything) if fold_of[i] not in left_out]
        stats = band_statistics(train_chips, bands, recipe.terrain)
        name = "fold_" + "_".join(str(f) for f in left_out)
        result = fit(config, ChipSet(train_chips, bands, stats, recipe.terrain), None, out / name,
                     resume=resume, device=device)
        return result.model, stats

    for f, held in enumerate(folds):
        model, stats = train((f,))
        held_chips = [everything[i] for i in held]
        held_set = ChipSet(held_chips, bands, stats, held_terrain or recipe.terrain)
        shifted = l2a_like(held_set.images, bands, stats.mean, stats.std, 1.0)
        clean, moved = plain_logits(model, held_set.images), plain_logits(model, shifted)
        turned = tta_logits(model, held_set.images)
        for j, chip_id in enumerate(held):
            outer[chip_id] = {"logits": clean[j, 0].numpy(), "logits_l2a": moved[j, 0].numpy(),
                              "logits_tta": turned[j, 0].numpy()}
            labels[chip_id] = held_set.masks[j, 0].numpy().astype(np.uint8)
        train_chips = [everything[i] for i in sorted(everything) if fold_of[i] != f]
        rule, _ = fit_rule(train_chips, recipe.terrain)
        rule_scores = score_rule(rule, held_chips, recipe.terrain)
        _add(rule_acc, rule_scores)
        per_fold.append({"fold": f, "held": held, "rule": {
            "ndvi_max": rule.ndvi_max, "slope_min_deg": rule.slope_min, "held": rule_scores.as_dict()}})
        log.info("outer fold %d/%d done (%.1f min)", f + 1, k, (time.monotonic() - started) / 60)
    shape = next(iter(labels.values())).shape
    for c in everything:
        inner[c] = np.full((k, *shape), np.nan, np.float32)
        inner_tta[c] = np.full((k, *shape), np.nan, np.float32)
    pairs = [(f, g) for f in range(k) for g in range(f + 1, k)] if inner_models else []
    for f, g in pairs:
        model, stats = train((f, g))
        for mine, other in ((f, g), (g, f)):
            ids = folds[mine]
            chip_set = ChipSet([everything[i] for i in ids], bands, stats, held_terrain or recipe.terrain)
            clean, turned = plain_logits(model, chip_set.images), tta_logits(model, chip_set.images)
            for j, chip_id in enumerate(ids):
                inner[chip_id][other] = clean[j, 0].numpy()
                inner_tta[chip_id][other] = turned[j, 0].numpy()
        log.info("inner pair (%d, %d) done (%.1f min)", f, g, (time.monotonic() - started) / 60)
    oof = OofPredictions()
    for c in sorted(everything):
        oof.chip_ids.append(c)
        oof.fold.append(fold_of[c])
        oof.logits.append(outer[c]["logits"])
        oof.logits_tta.append(outer[c]["logits_tta"])
        oof.logits_l2a.append(outer[c]["logits_l2a"])
        oof.inner.append(inner[c])
        oof.inner_tta.append(inner_tta[c])
        oof.labels.append(labels[c])
    arrays = oof.arrays()
    if not inner_models:
        del arrays["inner"], arrays["inner_tta"]
    np.savez_compressed(out / "oof.npz", **arrays)  # type: ignore[arg-type]
    analysis = analyse(arrays)
    analysis |= {
        "recipe": asdict(recipe),
        "folds": folds,
        "per_fold": per_fold,
        "rule": rule_acc.at(0.5).as_dict(),
        "minutes": round((time.monotonic() - started) / 60, 2),
        "trainings": k + len(pairs),
        "protocol": "nested" if inner_models else "cross-fitted (outer models only)",
    }
    (out / "cv.json").write_text(json.dumps(analysis, indent=2, sort_keys=True))
    return analysis


def _add(acc: ConfusionAccumulator, scores: Scores) -> None:
    acc._tp[0] += scores.tp
    acc._fp[0] += scores.fp
    acc._fn[0] += scores.fn
    acc._tn[0] += scores.tn
