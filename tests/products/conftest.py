"""Fixtures for the product tests: the fixture store, a reference mask, one full export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.products.export import ExportSummary, export_summary

from .store_fixture import FixtureStore, make_store


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> FixtureStore:
    """The fixture result store (complete)."""
    return make_store(tmp_path_factory.mktemp("store") / "result.zarr")


@pytest.fixture(scope="session")
def labels_tif(store: FixtureStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference mask GeoTIFF on the store grid: the five largest blobs."""
    lab = np.zeros(store.probability.shape, np.uint8)
    for b in store.blobs[:5]:
        lab[b.mask] = 1
    path = tmp_path_factory.mktemp("labels") / "labels.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=lab.shape[1],
        height=lab.shape[0],
        count=1,
        dtype="uint8",
        crs="EPSG:32654",
        transform=store.transform,
    ) as dst:
        dst.write(lab, 1)
    return path


@pytest.fixture(scope="session")
def exported(
    store: FixtureStore, labels_tif: Path, tmp_path_factory: pytest.TempPathFactory
) -> ExportSummary:
    """One export of the fixture store with labels, into a series collection; windows of 128 px."""
    root = tmp_path_factory.mktemp("export")
    return export_summary(
        store.path,
        root / "sweep1",
        labels_path=labels_tif,
        collection_path=root / "series" / "collection.json",
        window=128,
    )
