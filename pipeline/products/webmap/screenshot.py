"""Screenshots of a web map in headless Chromium: the command that makes ``docs/img/webmap-*.png``.

    python -m pipeline.products.webmap.screenshot --out docs/img

runs ``landslide demo`` into a temporary folder (the embedded scene, the shipped checkpoint),
writes its web map without the online basemap (so the picture does not depend on the network)
and saves two PNGs: the whole page, and a close-up of the largest landslide with its pop-up.
``--store`` (with optional ``--polygons``, ``--area``, ``--shakemap``, ``--summary``) maps an
existing sweep instead of the demo.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from pipeline.products.webmap.browser import Chromium
from pipeline.products.webmap.writer import write_web_map

WIDTH, HEIGHT = 1280, 800


def _demo(tmp: Path) -> tuple[Path, Path]:
    from pipeline.cli import main

    store = tmp / "demo.zarr"
    if main(["demo", "--out", str(store), "--no-progress"]) != 0:
        raise SystemExit("landslide demo failed")
    return store, tmp / "demo-products" / "landslides.geojson"


def read_map_data(folder: Path) -> dict[str, Any]:
    """Return the payload of a web map's ``data/map-data.js``."""
    text = (folder / "data" / "map-data.js").read_text()
    out: dict[str, Any] = json.loads(text.split("=", 1)[1].strip().rstrip(";"))
    return out


def capture(index: Path, out_dir: Path, *, width: int = WIDTH, height: int = HEIGHT) -> list[Path]:
    """Save ``webmap-demo.png`` (whole page) and ``webmap-demo-zoom.png`` (largest landslide)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with Chromium(width=width, height=height) as page:
        page.navigate(index.resolve().as_uri())
        page.wait_for("window.landslideWebMap && window.landslideWebMap.ready")
        errors = [e for e in page.console if e.is_error and "127.0.0.1" not in e.url]
        if errors:
            raise SystemExit(f"the page logged errors: {errors}")
        path = out_dir / "webmap-demo.png"
        path.write_bytes(page.screenshot())
        written.append(path)
        # close-up: the largest polygon (feature 0: id 1 is the largest), clicked for its pop-up
        point = None
        data = read_map_data(index.parent)
        if data["polygons"]["features"]:
            from shapely.geometry import shape

            geom = shape(data["polygons"]["features"][0]["geometry"])
            inside = geom.representative_point()
            w, s, e, n = geom.bounds
            point = page.evaluate(
                f"""(async () => {{
                  const m = window.landslideWebMap.map;
                  m.fitBounds([[{w}, {s}], [{e}, {n}]], {{padding: 160, animate: false}});
                  await window.landslideWebMap.whenIdle();
                  const p = m.project([{inside.x}, {inside.y}]);
                  return [p.x, p.y];
                }})()"""
            )
        if point is not None:
            x, y = point
            for kind in ("mousePressed", "mouseReleased"):
                page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
            page.evaluate("window.landslideWebMap.whenIdle()")
            page.pump(0.5)
            path = out_dir / "webmap-demo-zoom.png"
            path.write_bytes(page.screenshot())
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Run the command (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.products.webmap.screenshot", description=__doc__)
    ap.add_argument("--out", default="docs/img", help="folder for the PNGs (default docs/img)")
    ap.add_argument("--store", help="an existing result store (default: run the demo)")
    ap.add_argument("--polygons", help="landslide polygons file (default: from the store)")
    ap.add_argument("--area", help="swept area GeoJSON")
    ap.add_argument("--shakemap", help="ShakeMap contours GeoJSON")
    ap.add_argument("--summary", help="event summary.json")
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--height", type=int, default=HEIGHT)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="landslide-webmap-") as t:
        tmp = Path(t)
        if args.store:
            store, polygons = Path(args.store), (Path(args.polygons) if args.polygons else None)
        else:
            store, polygons = _demo(tmp)
        index = write_web_map(
            tmp / "webmap",
            store=store,
            polygons=polygons,
            area=args.area,
            shakemap_contours=args.shakemap,
            summary=args.summary,
            basemap=None,
        )
        for path in capture(index, Path(args.out), width=args.width, height=args.height):
            print(path)
        info = read_map_data(index.parent)
        print(f"{len(info['polygons']['features'])} polygon(s); probability {info['probability']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
