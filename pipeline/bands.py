"""Band sets, wavelengths, Landslide4Sense scaling and the processing-baseline offset.

Everything that says *which* numbers a model sees lives here, so that the cube, the models,
training and the sweep agree on one definition.

Landslide4Sense (L4S) chips hold 14 channels, each divided by a per-band constant published by
the dataset maintainers (``L4S_DIVISORS``): ``l4s_value = digital_number / divisor``. The sweep
builds the same scaling from live Sentinel-2 L2A digital numbers, so a model trained on L4S sees
inputs in the units it was trained on. Live L2A has no B10 (it exists only in Level-1C), so the
models used for sweeps are trained on ``SWEEP_BANDS`` (the 14 L4S channels less B10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: The 14 Landslide4Sense channels, in file order (HWC, last axis).
L4S_BANDS: Final[tuple[str, ...]] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12",
    "slope", "dem",
)  # fmt: skip

#: Per-channel divisors of L4S: ``l4s_value = physical_value / divisor`` (DN for S2 bands,
#: degrees for slope, metres for the DEM). Source: the L4S maintainers (DOMAIN.md).
L4S_DIVISORS: Final[dict[str, float]] = dict(
    zip(
        L4S_BANDS,
        (1111.81, 824.63, 663.42, 445.17, 645.86, 1547.74, 1960.44, 1941.32, 674.08, 9.05,
         1113.98, 519.90, 20.29, 772.83),
        strict=True,
    )
)  # fmt: skip

#: Sentinel-2 bands of the L4S set.
S2_BANDS_L4S: Final[tuple[str, ...]] = L4S_BANDS[:12]

#: Channels a live Sentinel-2 L2A catalog can supply: the L4S set without B10.
SWEEP_BANDS: Final[tuple[str, ...]] = tuple(b for b in L4S_BANDS if b != "B10")

#: Sentinel-2 L2A spectral bands the sweep loads (Planetary Computer asset keys).
S2_L2A_ASSETS: Final[tuple[str, ...]] = tuple(b for b in SWEEP_BANDS if b.startswith("B"))

#: Terrain channels derived from the DEM.
TERRAIN_BANDS: Final[tuple[str, ...]] = ("slope", "dem")

#: Central wavelengths in micrometres fed to Clay's dynamic patch embedding (DOMAIN.md).
WAVELENGTHS_UM: Final[dict[str, float]] = dict(
    zip(
        S2_BANDS_L4S,
        (0.443, 0.493, 0.560, 0.665, 0.704, 0.740, 0.783, 0.842, 0.945, 1.375, 1.610, 2.190),
        strict=True,
    )
)  # fmt: skip

#: Sentinel-2 processing baseline from which L2A digital numbers carry a +1000 offset.
OFFSET_BASELINE: Final[tuple[int, int]] = (4, 0)
#: The offset added to L2A digital numbers from ``OFFSET_BASELINE`` on.
BOA_ADD_OFFSET: Final[int] = 1000

#: SCL classes treated as not valid: 0 no data, 1 saturated/defective, 3 cloud shadow,
#: 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus.
SCL_INVALID: Final[tuple[int, ...]] = (0, 1, 3, 8, 9, 10)
#: SCL classes whose masks are dilated (clouds and their shadows have soft edges).
SCL_DILATE: Final[tuple[int, ...]] = (3, 8, 9, 10)


def parse_baseline(value: str | None) -> tuple[int, int]:
    """Parse a processing baseline such as ``"04.00"`` or ``"05.10"``.

    Args:
        value: The item's ``s2:processing_baseline`` property, or None when absent.

    Returns:
        ``(major, minor)``; ``(0, 0)`` when the property is absent (treated as pre-04.00).

    Raises:
        ValueError: If the string is not of the form ``MM.mm``.
    """
    if value is None:
        return (0, 0)
    parts = str(value).strip().split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"bad s2:processing_baseline {value!r}: expected 'MM.mm'")
    return (int(parts[0]), int(parts[1]))


def dn_offset(baseline: str | None) -> int:
    """Offset to subtract from L2A digital numbers of a scene to harmonise it.

    Processing baseline 04.00 (from 2022-01-25) adds ``BOA_ADD_OFFSET`` to every L2A digital
    number; Planetary Computer items do not expose the offset, so it is derived from the
    baseline: ``harmonised = DN - dn_offset(baseline)``.

    Args:
        baseline: The item's ``s2:processing_baseline``.

    Returns:
        1000 for baselines >= 04.00, else 0.
    """
    return BOA_ADD_OFFSET if parse_baseline(baseline) >= OFFSET_BASELINE else 0


def band_indices(bands: Sequence[str], subset: Sequence[str]) -> list[int]:
    """Positions of ``subset`` within ``bands``, in ``subset`` order.

    Raises:
        KeyError: Naming the first band of ``subset`` missing from ``bands``.
    """
    index = {b: i for i, b in enumerate(bands)}
    missing = [b for b in subset if b not in index]
    if missing:
        raise KeyError(f"bands {missing} not in {list(bands)}")
    return [index[b] for b in subset]
