"""Make training inputs look like sweep inputs: the sweep's slope operator and an L2A-like shift.

**Terrain.** A sweep computes the slope from the DEM with :func:`pipeline.cube.slope_degrees`
(central differences at 10 m); the L4S ``slope`` channel was made by another operator (on the
demo chips: r 0.80, MAE 6.9 degrees against the sweep's). :func:`with_sweep_slope` replaces the
channel by the sweep's slope of the chip's own DEM channel, so a model trained on it sees the
terrain feature the sweep will feed it (``terrain="sweep"``).

**Radiometry.** L4S holds top-of-atmosphere (Level-1C-like) values; sweeps read Level-2A
bottom-of-atmosphere reflectance. Atmospheric correction removes path radiance, which is large in
the short (blue, coastal aerosol) bands and small in the red and beyond, and it slightly raises
near-infrared and SWIR reflectance of vegetated land (Zhang et al. 2018, Remote Sensing of
Environment 215: 482-494, Sentinel-2A TOA vs surface reflectance over southern Africa; ESA's
Sen2Cor product description). :data:`L2A_SHIFT` encodes that as ``BOA = gain * TOA + offset``
(reflectance units) with typical magnitudes; it is a scenario for augmentation and stress
testing, not a per-scene correction. :func:`shift_in_z` turns a fraction of it into the gain and
offset of normalised (z-scored) model inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.bands import L4S_BANDS, L4S_DIVISORS

#: Pixel size of L4S chips and of the sweep's grid (metres).
RESOLUTION_M = 10.0
#: Digital numbers per unit reflectance of Sentinel-2 L1C and L2A products.
QUANTIFICATION = 10000.0
TERRAIN_CHOICES = ("l4s", "sweep")

#: Typical Level-2A minus Level-1C change per band, as (gain, offset in reflectance):
#: ``boa = gain * toa + offset``. Path radiance removal dominates B01/B02 (about -0.06 and
#: -0.04 reflectance over land), fades through green and red, and vegetated NIR/SWIR rise a few
#: percent; B09 (water vapour) rises most.
L2A_SHIFT: dict[str, tuple[float, float]] = {
    "B01": (1.00, -0.060), "B02": (1.00, -0.040), "B03": (1.00, -0.020), "B04": (1.00, -0.010),
    "B05": (1.00, -0.005), "B06": (1.02, 0.0), "B07": (1.04, 0.0), "B08": (1.05, 0.0),
    "B09": (1.20, 0.0), "B10": (1.00, 0.0), "B11": (1.03, 0.0), "B12": (1.02, 0.0),
}  # fmt: skip


def sweep_slope_degrees(dem_m: np.ndarray) -> np.ndarray:
    """Slope in degrees of a 10 m height grid, by the sweep's own operator (``pipeline.cube``)."""
    import xarray as xr

    from pipeline.cube import slope_degrees

    dem = xr.DataArray(np.asarray(dem_m, dtype=np.float64), dims=("y", "x"))
    return np.asarray(slope_degrees(dem, RESOLUTION_M).values, dtype=np.float64)


def with_sweep_slope(image_hwc: np.ndarray) -> np.ndarray:
    """A copy of an L4S chip whose ``slope`` channel is the sweep's slope of its ``dem`` channel."""
    out = np.array(image_hwc, dtype=np.float64, copy=True)
    dem_m = out[..., L4S_BANDS.index("dem")] * L4S_DIVISORS["dem"]
    out[..., L4S_BANDS.index("slope")] = sweep_slope_degrees(dem_m) / L4S_DIVISORS["slope"]
    return out


def apply_terrain(image_hwc: np.ndarray, terrain: str) -> np.ndarray:
    """The chip with the slope channel ``terrain`` asks for (``l4s``: as stored; ``sweep``: recomputed)."""
    if terrain not in TERRAIN_CHOICES:
        raise ValueError(f"terrain must be one of {TERRAIN_CHOICES}, not {terrain!r}")
    return image_hwc if terrain == "l4s" else with_sweep_slope(image_hwc)


def shift_in_z(
    bands: Sequence[str], mean: Sequence[float], std: Sequence[float], fraction: float | torch.Tensor = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gain and offset of z-scored inputs for ``fraction`` of :data:`L2A_SHIFT`.

    With ``v = DN / divisor`` and ``z = (v - mean) / std``, ``boa = g * toa + o`` becomes
    ``z' = g * z + ((g - 1) * mean + o * QUANTIFICATION / divisor) / std``. Terrain channels are
    unchanged. ``fraction`` may be a tensor ``[B, 1]`` (one draw per chip).

    Returns:
        ``(gain, offset)`` broadcastable to ``[B, C, 1, 1]`` (``[C]`` shaped for a scalar fraction).
    """
    g = np.array([L2A_SHIFT.get(b, (1.0, 0.0))[0] for b in bands])
    o = np.array([L2A_SHIFT.get(b, (1.0, 0.0))[1] * QUANTIFICATION / L4S_DIVISORS[b] for b in bands])
    m, s = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    frac = fraction if isinstance(fraction, torch.Tensor) else torch.tensor(float(fraction))
    gain_full = torch.tensor(g, dtype=torch.float32)
    gain = 1.0 + frac * (gain_full - 1.0)
    offset = (
        (gain - 1.0) * torch.tensor(m, dtype=torch.float32) + frac * torch.tensor(o, dtype=torch.float32)
    ) / torch.tensor(s, dtype=torch.float32)
    if gain.ndim == 2:
        return gain[..., None, None], offset[..., None, None]
    return gain, offset


def floor_in_z(bands: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The z value of zero reflectance per channel (``-mean / std``; terrain: no floor), ``[C, 1, 1]``."""
    floor = [-m / s if b.startswith("B") else -np.inf for b, m, s in zip(bands, mean, std, strict=True)]
    return torch.tensor(floor, dtype=torch.float32)[:, None, None]


def l2a_like(
    x: torch.Tensor,
    bands: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    fraction: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Normalised inputs ``[B, C, H, W]`` shifted ``fraction`` of the way to Level-2A (reflectance >= 0)."""
    gain, offset = shift_in_z(bands, mean, std, fraction)
    if gain.ndim == 1:
        gain, offset = gain[:, None, None], offset[:, None, None]
    return torch.maximum(x * gain + offset, floor_in_z(bands, mean, std))
