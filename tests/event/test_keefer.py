"""The Keefer fallback: the magnitude -> area rule and the land it keeps."""

from __future__ import annotations

import math

import pytest

from pipeline.demo.scene import DEMO_BBOX
from pipeline.event.keefer import landslide_radius_km, sweep_bbox

from .conftest import TEST_RADIUS_KM


def test_keefer_radius() -> None:
    # log10 A = M - 3.46: 219 km2 on average at M 5.8 (Keefer 2002)
    assert landslide_radius_km(5.8, n_sigma=0) == pytest.approx(math.sqrt(10**2.34 / math.pi))
    radii = [landslide_radius_km(m) for m in (5.0, 6.0, 6.6, 6.8)]
    assert radii == sorted(radii)
    assert landslide_radius_km(9.0) == 50.0
    assert landslide_radius_km(4.0) == 5.0
    assert landslide_radius_km(6.6, max_radius_km=TEST_RADIUS_KM) == TEST_RADIUS_KM


def test_land_mask() -> None:
    w, s, e, n = DEMO_BBOX
    centre = ((w + e) / 2, (s + n) / 2)
    box = sweep_bbox(*centre, TEST_RADIUS_KM)
    assert box is not None
    assert w < box[0] < box[2] < e and s < box[1] < box[3] < n
    assert sweep_bbox(-140.0, -30.0, 50.0) is None  # South Pacific
    # offshore epicentre 25 km south of Hokkaido's coast: swept, but only the land side
    coastal = sweep_bbox(142.5, 41.9, 40.0)
    assert coastal is not None and coastal[1] > 41.9 - 40 / 111.195 + 0.1
