"""``python -m bench.cube_snapshot``: save a bench scene's cube, or compare two saved cubes bit for bit.

Checks that a change to the data path kept every value (run the old tree's ``pipeline`` by putting
it first on ``PYTHONPATH``)::

    git archive 750a7d6 pipeline | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old:$PWD python -m bench.cube_snapshot save /tmp/dp/dp-four-4x4 old.npz --chunk 2048
    python -m bench.cube_snapshot save /tmp/dp/dp-four-4x4 new.npz --chunk 768
    python -m bench.cube_snapshot compare old.npz new.npz

The scene directories are those :mod:`bench.data_path` writes (``bench-scene.json`` or, for the
Planetary-Computer-shaped scenes, ``pc-scene.json`` inside).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path


def save(scene_dir: Path, out: Path, chunk: int) -> None:
    """Compute the scene's whole cube (every layer and ``n_clear``) and save it as ``.npz``."""
    import dask
    import numpy as np

    from pipeline import catalog, cube
    from pipeline.demo import scene as demo
    from pipeline.sweep import DEM_WINDOW, area_geobox

    pc = scene_dir / "pc-scene.json"  # a Planetary-Computer-shaped scene: its own dates
    d = json.loads((pc if pc.is_file() else scene_dir / "bench-scene.json").read_text())
    cat, bbox = catalog.open_catalog(d["catalog"]), tuple(d["bbox"])
    start, end = (
        (dt.date.fromisoformat(d["start"]), dt.date.fromisoformat(d["end"])) if pc.is_file()
        else (demo.DEMO_START, demo.DEMO_END)
    )  # fmt: skip
    s2 = cat.search(cube.S2_COLLECTION, bbox, start, end)
    dem = cat.search(cube.DEM_COLLECTION, bbox, *DEM_WINDOW)
    with dask.config.set(scheduler="synchronous"):
        c = cube.build_cube(s2, dem, area_geobox(bbox), chunk=chunk)
        np.savez(out, layers=c["layers"].values, n_clear=c["n_clear"].values)


def compare(a: Path, b: Path) -> bool:
    """Print, per array, whether the two saved cubes are bit-identical (NaN equal to NaN)."""
    import numpy as np

    x, y = np.load(a), np.load(b)
    same = True
    for name in sorted(set(x.files) | set(y.files)):
        equal = name in x.files and name in y.files and np.array_equal(x[name], y[name], equal_nan=True)
        print(f"{name:8s} bit-identical {equal}")
        same &= equal
    return same


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.cube_snapshot", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("scene_dir", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--chunk", type=int, default=2048)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "save":
        save(args.scene_dir, args.out, args.chunk)
        return 0
    return 0 if compare(args.a, args.b) else 1


if __name__ == "__main__":
    sys.exit(main())
