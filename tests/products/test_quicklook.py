from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.products.quicklook import DPI, FIG_WIDTH_IN, write_quicklook
from pipeline.store import open_result

from .store_fixture import FixtureStore


def test_quicklook_with_labels_panel(exported) -> None:
    img = Image.open(exported.paths["quicklook"])
    assert img.format == "PNG"
    assert img.size[0] == int(FIG_WIDTH_IN * DPI)
    assert 400 <= img.size[1] <= 1000


def test_quicklook_single_panel_shows_nodata_grey(store: FixtureStore, tmp_path: Path) -> None:
    out = write_quicklook(open_result(store.path), tmp_path / "q.png")
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[1] == int(FIG_WIDTH_IN * DPI)
    grey = np.all(img == (0xD9, 0xD9, 0xD9), axis=-1)
    assert grey.sum() > 1000  # the invalid border is drawn in the no-data colour
    cyan = np.all(img == (0, 255, 255), axis=-1)
    assert cyan.sum() > 100  # threshold contour
