"""``landslide event-area``: the area to sweep after an earthquake, from its ShakeMap grid."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipeline.errors import UserError


def register(subparsers: Any) -> None:
    """Add the ``event-area`` subcommand to the ``landslide`` parser."""
    from pipeline.event.config import (
        DEFAULT_FLAT_DEG,
        DEFAULT_PGA_G,
        DEFAULT_TILE_DEG,
        LAND_MASK_NOTE,
        area_rule,
    )

    p: argparse.ArgumentParser = subparsers.add_parser(
        "event-area",
        help=f"plan the area to sweep from a ShakeMap grid.xml ({area_rule()} on land, in tiles)",
        description="Read a ShakeMap grid.xml (ShakeMap 3.5 or 4 layout), keep the cells at or above "
        f"the PGA (or MMI) threshold, clip them to land ({LAND_MASK_NOTE}), cut "
        f"them into sweep tiles (skipping flat ones when --dem is given) and write WGS84 GeoJSON. Prints "
        "the area that will be swept (the union of the tile boxes written, measured in EPSG:6933) and "
        "the land area beside the Keefer (1984/2002) disc the watch would sweep without a ShakeMap.",
    )
    p.add_argument("--shakemap", required=True, metavar="GRID.xml", help="ShakeMap grid.xml")
    p.add_argument("--out", required=True, metavar="AREA.geojson", help="output GeoJSON (WGS84)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pga", type=float, metavar="G", help=f"PGA threshold in g (default {DEFAULT_PGA_G:g})")
    g.add_argument("--mmi", type=float, metavar="I", help="MMI threshold instead of PGA")
    p.add_argument(
        "--tile-deg",
        type=float,
        default=DEFAULT_TILE_DEG,
        metavar="DEG",
        help=f"sweep tile side in degrees (default {DEFAULT_TILE_DEG:g})",
    )
    p.add_argument(
        "--dem",
        action="append",
        default=[],
        metavar="COG",
        help="EPSG:4326 DEM COG (file or URL, repeatable) to skip flat tiles",
    )
    p.add_argument(
        "--flat-deg",
        type=float,
        default=DEFAULT_FLAT_DEG,
        metavar="DEG",
        help=f"a tile whose steepest coarse slope is below this is skipped (default {DEFAULT_FLAT_DEG:g})",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.event.area import geodesic_km2
    from pipeline.event.config import DEFAULT_MAX_RADIUS_KM, LAND_MASK_NOTE, area_rule
    from pipeline.event.keefer import disc, landslide_radius_km
    from pipeline.event.land import clip_to_land
    from pipeline.event.shakemap import parse_grid, shaken_area
    from pipeline.event.tiles import area_geojson, dem_overview_probe, mark_flat, split_tiles, swept_km2

    path = Path(args.shakemap)
    if not path.is_file():
        raise UserError(f"ShakeMap grid {path} does not exist")
    if args.pga is not None and args.pga <= 0:
        raise UserError(f"--pga must be positive, not {args.pga}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"directory of --out {out} does not exist")
    grid = parse_grid(path)
    rule = area_rule(args.pga, args.mmi)
    shaken = shaken_area(grid, pga_g=args.pga, mmi=args.mmi)
    area = clip_to_land(shaken)
    probe = dem_overview_probe(args.dem) if args.dem else None
    tiles = mark_flat(split_tiles(area, args.tile_deg), probe, args.flat_deg)
    radius = landslide_radius_km(grid.magnitude, DEFAULT_MAX_RADIUS_KM)
    keefer = disc(grid.lon, grid.lat, radius)
    props = {
        "event_id": grid.event_id,
        "shakemap_version": grid.version,
        "shakemap_layout": grid.layout,
        "magnitude": grid.magnitude,
        "rule": rule,
        "land_km2": round(geodesic_km2(area), 1),
        "shaken_km2": round(geodesic_km2(shaken), 1),
        "keefer_radius_km": round(radius, 2),
        "keefer_disc_km2": round(geodesic_km2(keefer), 1),
        "land_mask": LAND_MASK_NOTE,
        "tiles": len(tiles),
        "tiles_flat": sum(t.skip == "flat" for t in tiles),
        "swept_km2": round(swept_km2(tiles), 1),
    }
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(area_geojson(area, tiles, props)))
    tmp.replace(out)
    swept = [t for t in tiles if t.skip is None]
    print(f"ShakeMap {grid.event_id} v{grid.version} ({grid.layout} layout), M{grid.magnitude:g}: {rule}")
    print(f"shaken area       {props['shaken_km2']:,.1f} km2")
    print(f"on land           {props['land_km2']:,.1f} km2 in {len(tiles)} tile(s) of {args.tile_deg:g} deg")
    print(
        f"to sweep          {props['swept_km2']:,.1f} km2: {len(swept)} tile box(es), EPSG:6933 "
        f"({sum(t.area_km2 for t in swept):,.1f} km2 of the area in them; {props['tiles_flat']} flat "
        f"skipped{'' if probe else '; no --dem, none checked'})"
    )
    print(
        f"Keefer disc       {props['keefer_disc_km2']:,.1f} km2 (radius {radius:.1f} km, capped at "
        f"{DEFAULT_MAX_RADIUS_KM:g})"
    )
    print(f"wrote {out}")
    return 0
