"""A tuned rule baseline: landslide where NDVI is low and the slope is steep.

``NDVI = (B08 - B04) / (B08 + B04)`` on digital numbers (L4S values times
:data:`pipeline.bands.L4S_DIVISORS`) and the slope in degrees; a pixel is a landslide when
``NDVI < ndvi_max`` and ``slope > slope_min``. Both thresholds are grid-searched for the best
pixel F1 over the *training* chips and then applied unchanged to held-out chips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.bands import L4S_BANDS, L4S_DIVISORS
from pipeline.train.data import Chip, read_image, read_mask
from pipeline.train.metrics import ConfusionAccumulator, Scores

NDVI_GRID: tuple[float, ...] = tuple(round(-0.2 + 0.02 * i, 2) for i in range(46))  # -0.2 .. 0.7
SLOPE_GRID: tuple[float, ...] = tuple(float(d) for d in range(0, 46))  # degrees


@dataclass(frozen=True)
class NdviSlopeRule:
    """``NDVI < ndvi_max and slope_deg > slope_min``."""

    ndvi_max: float
    slope_min: float

    def predict(self, ndvi: np.ndarray, slope_deg: np.ndarray) -> np.ndarray:
        """Boolean landslide map."""
        return (ndvi < self.ndvi_max) & (slope_deg > self.slope_min)


def ndvi_and_slope(chip: Chip, terrain: str = "l4s") -> tuple[np.ndarray, np.ndarray]:
    """NDVI (non-finite -> 1, i.e. never a landslide) and slope in degrees of one chip.

    ``terrain="sweep"`` uses the slope the sweep computes from the chip's DEM channel.
    """
    image = read_image(chip, terrain)
    red = image[..., L4S_BANDS.index("B04")] * L4S_DIVISORS["B04"]
    nir = image[..., L4S_BANDS.index("B08")] * L4S_DIVISORS["B08"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    slope = image[..., L4S_BANDS.index("slope")] * L4S_DIVISORS["slope"]
    return np.where(np.isfinite(ndvi), ndvi, 1.0), np.where(np.isfinite(slope), slope, 0.0)


def score_rule(rule: NdviSlopeRule, chips: Sequence[Chip], terrain: str = "l4s") -> Scores:
    """Pixel scores of ``rule`` over all pixels of ``chips``."""
    acc = ConfusionAccumulator((0.5,))
    for chip in chips:
        ndvi, slope = ndvi_and_slope(chip, terrain)
        pred = torch.from_numpy(rule.predict(ndvi, slope).astype(np.float32))
        acc.update(pred, torch.from_numpy(read_mask(chip)))
    return acc.at(0.5)


def fit_rule(chips: Sequence[Chip], terrain: str = "l4s") -> tuple[NdviSlopeRule, Scores]:
    """Grid-search both thresholds for the best F1 over all pixels of ``chips`` (training chips)."""
    pairs = [ndvi_and_slope(c, terrain) for c in chips]
    ndvi = np.concatenate([p[0].ravel() for p in pairs])
    slope = np.concatenate([p[1].ravel() for p in pairs])
    truth = np.concatenate([read_mask(c).ravel() for c in chips]).astype(bool)
    best: tuple[float, NdviSlopeRule] | None = None
    for slope_min in SLOPE_GRID:
        steep = slope > slope_min
        for ndvi_max in NDVI_GRID:
            pred = steep & (ndvi < ndvi_max)
            tp = int((pred & truth).sum())
            denom = int(pred.sum()) + int(truth.sum())
            f1 = 2 * tp / denom if denom else 0.0
            if best is None or f1 > best[0]:
                best = (f1, NdviSlopeRule(ndvi_max, slope_min))
    assert best is not None
    return best[1], score_rule(best[1], chips, terrain)
