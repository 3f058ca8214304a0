"""``python -m bench.data_path_compare OLD_CUBE_PY SCENE_DIR``: an older cube module vs this one.

Loads ``OLD_CUBE_PY`` (e.g. ``git show 60e6051:pipeline/cube.py > /tmp/oldcube.py``) as a module,
builds both cubes over a bench scene (``bench-scene.json`` in ``SCENE_DIR``, written by
:mod:`bench.data_path`) with the sweep's 160-px margin, and prints, per variable, whether they are
bit-identical, the largest difference and how many pixels differ in being NaN; and whether this
cube is the same for chunks of 256 and 2048.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    import dask
    import numpy as np

    from pipeline import catalog, cube
    from pipeline.bands import SWEEP_BANDS
    from pipeline.demo import scene as demo
    from pipeline.sweep import DEM_WINDOW, REGION_MARGIN, area_geobox, window_geobox

    old_path, scene_dir = (argv or sys.argv[1:])[:2]
    spec = importlib.util.spec_from_file_location("oldcube", old_path)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules["oldcube"] = old
    spec.loader.exec_module(old)
    d = json.loads((Path(scene_dir) / "bench-scene.json").read_text())
    cat, bbox = catalog.open_catalog(d["catalog"]), tuple(d["bbox"])
    s2 = cat.search(cube.S2_COLLECTION, bbox, demo.DEMO_START, demo.DEMO_END)
    dem = cat.search(cube.DEM_COLLECTION, bbox, *DEM_WINDOW)
    area = area_geobox(bbox)
    gbox = window_geobox(area, (0, area.shape[0]), (0, area.shape[1]), REGION_MARGIN)
    print(f"{len(s2)} acquisitions, grid {gbox.shape.y} x {gbox.shape.x}")
    with dask.config.set(scheduler="synchronous"):
        a = old.build_cube(s2, dem, gbox, chunk=256).compute()
        b = cube.build_cube(s2, dem, gbox, chunk=256).compute()
        c = cube.build_cube(s2, dem, gbox, chunk=2048).compute()
    for name in [*SWEEP_BANDS, "valid", "n_clear", "slope_deg"]:
        x, y = a[name].values.astype(np.float64), b[name].values.astype(np.float64)
        same = np.array_equal(x, y, equal_nan=True)
        diff = 0.0 if same else float(np.nanmax(np.abs(x - y)))
        nan_mismatch = int((np.isnan(x) != np.isnan(y)).sum())
        chunk_same = np.array_equal(b[name].values, c[name].values, equal_nan=True)
        print(f"{name:10s} identical {same!s:5s} max|diff| {diff:.3g}  NaN mismatch {nan_mismatch:6d}  "
              f"chunk 256 == 2048 {chunk_same}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
