"""Orchestration of a regional sweep: search, regions, ``map_overlap``, region writes, resume.

The area's UTM grid (padded to whole 128-px chips) is cut into **regions** of
``region_blocks x region_blocks`` blocks. Regions are computed one after another, each with its
own small Dask graph (so an area of any size never builds millions of tasks at once) and its own
freshly signed items (Planetary Computer tokens expire). A region's cube is loaded with a margin
of ``REGION_MARGIN`` pixels of real data around it, so the halo of its border blocks is real
imagery and the mosaic does not depend on how the area was cut. After a region's chunks are
written, it is recorded in the store; a re-run of the same command skips recorded regions, and
the store is marked ``complete`` only at the end (:mod:`pipeline.store`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pystac
import xarray as xr
from affine import Affine
from distributed import Client, progress
from odc.geo.geobox import GeoBox

from pipeline import __version__, catalog, cube, store
from pipeline.bands import S2_L2A_ASSETS
from pipeline.cluster import ClusterSpec, dask_client
from pipeline.cube import DEM_COLLECTION, S2_COLLECTION
from pipeline.errors import UserError
from pipeline.models.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    read_meta,
    sha256_file,
    shipped_checkpoint,
)
from pipeline.predict import ModelPlugin, chips_run_here, predict_block, resolve_device
from pipeline.tiling import ChipGrid, chips_to_tile_once, chunk_bounds, pad_to_multiple

#: Real data loaded around each region: the chip halo (128) plus slack for the cube's own
#: neighbourhood operations (cloud-mask dilation, slope, DEM gap filling).
REGION_MARGIN = 160
RESOLUTION = 10.0
#: Largest side (pixels) of a region read as a single chunk (see :func:`read_chunk`).
READ_CHUNK_MAX = 1024
#: The DEM is static: its items carry a production date, so search it over a wide window.
DEM_WINDOW = (dt.date(1990, 1, 1), dt.date(2100, 12, 31))


@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs; small and serialisable (the flows pass it around).

    Attributes:
        bbox: Area as WGS84 ``(west, south, east, north)``.
        start: First day of the post-event window.
        end: Last day of the window (inclusive).
        out: Output Zarr path.
        catalog: STAC API URL or local catalog file; None for Planetary Computer.
        checkpoint: Model checkpoint; None for the one shipped with the package.
        model: Expected model name (checked against the checkpoint), or None.
        block: Block size in pixels (a multiple of 128).
        overlap: Pixels shared by neighbouring chips (the blend zone).
        batch_size: Chips per forward pass.
        max_cloud: Maximum scene cloud cover (%), or None.
        region_blocks: Blocks per region side.
        zarr_format: 2 (GDAL-readable, default) or 3.
        overwrite: Replace a complete store at ``out``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        cluster: Where to compute.
        event_id: Optional event identifier recorded in the store.
        progress: Show a progress bar.
        read_retries: HTTP retries of every COG request (GDAL, exponential backoff).
        retry_delay_s: First wait between retries (seconds; doubles each retry).
        read_timeout_s: Timeout of one HTTP request (seconds).
    """

    bbox: tuple[float, float, float, float]
    start: dt.date
    end: dt.date
    out: Path
    catalog: str | None = None
    checkpoint: Path | None = None
    model: str | None = None
    block: int = 2048
    overlap: int = 8
    batch_size: int = 8
    max_cloud: float | None = 80.0
    region_blocks: int = 4
    zarr_format: int = 2
    overwrite: bool = False
    device: str = "auto"
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    event_id: str | None = None
    progress: bool = True
    read_retries: int = 5
    retry_delay_s: float = 1.0
    read_timeout_s: float = 60.0


@dataclass(frozen=True)
class SweepSummary:
    """What a finished sweep reports."""

    out: str
    area_km2: float
    valid_fraction: float
    landslide_km2: float
    threshold: float
    wall_s: float
    chips: int
    chips_per_s: float
    overlap_factor: float
    regions_computed: int
    regions_total: int
    scenes: list[str]
    skipped_scenes: list[str]
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary lines (warnings last, each on its own line)."""
        return [
            f"wrote {self.out}",
            f"area swept        {self.area_km2:,.2f} km2 ({self.valid_fraction:.1%} valid)",
            f"landslide area    {self.landslide_km2:,.4f} km2 at p >= {self.threshold:.2f}",
            f"scenes            {len(self.scenes)} used, {len(self.skipped_scenes)} skipped",
            f"regions           {self.regions_computed} computed of {self.regions_total}",
            f"wall time         {self.wall_s:,.1f} s; {self.chips} chips, {self.chips_per_s:,.2f} chips/s "
            f"(overlap factor {self.overlap_factor:.2f})",
            *(f"warning: {w}" for w in self.warnings),
        ]


@dataclass(frozen=True)
class Region:
    """A rectangle of whole blocks, in pixel coordinates of the area."""

    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]


def plan_regions(shape: tuple[int, int], block: int, region_blocks: int) -> list[Region]:
    """Cut an area into regions of ``region_blocks`` blocks a side (row-major order)."""
    step = block * region_blocks
    out: list[Region] = []
    for r0 in range(0, shape[0], step):
        for c0 in range(0, shape[1], step):
            out.append(Region(len(out), (r0, min(r0 + step, shape[0])), (c0, min(c0 + step, shape[1]))))
    return out


def area_geobox(bbox: tuple[float, float, float, float], chip: int = 128) -> GeoBox:
    """The area's UTM grid at 10 m, padded right and down to whole chips."""
    gbox = cube.utm_geobox(bbox, RESOLUTION)
    rows, cols = gbox.shape
    return GeoBox((pad_to_multiple(rows, chip), pad_to_multiple(cols, chip)), gbox.transform, gbox.crs)


def window_geobox(gbox: GeoBox, rows: tuple[int, int], cols: tuple[int, int], margin: int) -> GeoBox:
    """Sub-grid of ``gbox`` for a pixel window grown by ``margin`` (may extend past ``gbox``)."""
    r0, c0 = rows[0] - margin, cols[0] - margin
    shape = (rows[1] - rows[0] + 2 * margin, cols[1] - cols[0] + 2 * margin)
    return GeoBox(shape, gbox.transform * Affine.translation(c0, r0), gbox.crs)


def read_chunk(load_box: GeoBox, block: int) -> int:
    """Chunk size of a region's cube: the whole region when it is small, else the block size.

    Reading and cube tasks cost about a millisecond of scheduling each; a region of small blocks
    read in block-sized chunks spends most of its time there. Regions up to ``READ_CHUNK_MAX``
    pixels a side are read as one chunk (at most ~55 MB of float32 bands); larger ones in chunks
    of ``max(block, READ_CHUNK_MAX)``. The cube is chunk-invariant, so this changes no value.
    """
    return max(block, min(max(int(n) for n in load_box.shape), READ_CHUNK_MAX))


def margin_chunks(size: int, block: int, margin: int) -> tuple[int, ...]:
    """Chunks along an axis of a region loaded with a margin: ``(m, B, ..., B, rest, m)``."""
    core = [block] * (size // block) + ([size % block] if size % block else [])
    return (margin, *core, margin)


def fingerprint(cfg: SweepConfig, meta_sha: str, shape: tuple[int, int], crs: str) -> str:
    """Identity of a sweep's output: a re-run with the same fingerprint may resume."""
    key = {
        "bbox": list(cfg.bbox), "start": cfg.start.isoformat(), "end": cfg.end.isoformat(),
        "catalog": cfg.catalog, "checkpoint": meta_sha, "block": cfg.block, "overlap": cfg.overlap,
        "max_cloud": cfg.max_cloud, "zarr_format": cfg.zarr_format, "shape": list(shape), "crs": crs,
        "region_blocks": cfg.region_blocks,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def validate(cfg: SweepConfig) -> None:
    """Check the configuration before anything is read or written.

    Raises:
        UserError: One line saying what is wrong.
    """
    catalog.validate_bbox(cfg.bbox)
    if cfg.end < cfg.start:
        raise UserError(f"--end {cfg.end} is before --start {cfg.start}")
    if cfg.block < 128 or cfg.block % 128:
        raise UserError(f"--block {cfg.block} must be a positive multiple of 128")
    if cfg.zarr_format not in (2, 3):
        raise UserError(f"--zarr-format must be 2 or 3, not {cfg.zarr_format}")
    if cfg.region_blocks < 1:
        raise UserError("--region-blocks must be at least 1")


def load_meta(cfg: SweepConfig) -> tuple[Path, CheckpointMeta, str]:
    """The checkpoint to use, its metadata and SHA-256 (nothing is unpickled)."""
    path = Path(cfg.checkpoint) if cfg.checkpoint else shipped_checkpoint()
    try:
        meta = read_meta(path)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    if cfg.model and cfg.model != meta.model:
        raise UserError(f"--model {cfg.model} does not match checkpoint {path.name} (a {meta.model!r} model)")
    return path, meta, sha256_file(path)


def region_probability(
    stack: da.Array,
    grid: ChipGrid,
    region: Region,
    shape: tuple[int, int],
    block: int,
    model_kw: dict[str, Any],
) -> da.Array:
    """``map_overlap`` the model over a region's margin-extended band stack; return its core.

    Args:
        stack: ``[C, Y, X]`` bands of the region grown by ``REGION_MARGIN`` on every side.
        grid: The global chip grid.
        region: The region (its window in the area's pixel coordinates).
        shape: Shape of the whole area.
        block: Block size.
        model_kw: ``checkpoint``, ``sha256``, ``device``, ``batch_size`` for :func:`predict_block`.

    Returns:
        ``[rows, cols]`` probabilities of the region, chunked by ``block``.
    """
    m = REGION_MARGIN
    chunks = (
        (stack.shape[0],),
        margin_chunks(stack.shape[1] - 2 * m, block, m),
        margin_chunks(stack.shape[2] - 2 * m, block, m),
    )
    stack = stack.rechunk(chunks)
    prob = da.map_overlap(
        predict_block, stack,
        depth={0: 0, 1: grid.halo, 2: grid.halo}, boundary=np.nan, trim=False, drop_axis=0,
        chunks=chunks[1:], dtype=np.float32, meta=np.empty((0, 0), dtype=np.float32),
        grid=grid, bounds_y=chunk_bounds(chunks[1]), bounds_x=chunk_bounds(chunks[2]),
        offset=(region.rows[0] - m, region.cols[0] - m), shape=shape, **model_kw,
    )  # fmt: skip
    return prob[m:-m, m:-m]


def read_policy(cfg: SweepConfig) -> cube.ReadPolicy:
    """The COG reading policy of a sweep (retries, backoff, timeout)."""
    return cube.ReadPolicy(
        max_retry=cfg.read_retries, retry_delay_s=cfg.retry_delay_s, timeout_s=cfg.read_timeout_s
    )


@dataclass
class _Scenes:
    """The items a sweep uses, and those it left out (id -> reason)."""

    s2: list[pystac.Item]
    dem: list[pystac.Item]
    skipped: dict[str, str]

    def drop(self, skipped: list[cube.SkippedScene]) -> None:
        """Leave out newly skipped scenes for the rest of the sweep."""
        for sk in skipped:
            self.skipped.setdefault(sk.id, f"{sk.collection} {sk.reason}")
        self.s2 = [it for it in self.s2 if it.id not in self.skipped]
        self.dem = [it for it in self.dem if it.id not in self.skipped]


def _search(cfg: SweepConfig, cat: catalog.Catalog) -> tuple[list[pystac.Item], list[pystac.Item]]:
    """Post-event Sentinel-2 items and DEM tiles over the area; checked before anything is written."""
    s2_items = cat.search(S2_COLLECTION, cfg.bbox, cfg.start, cfg.end, max_cloud=cfg.max_cloud)
    if not s2_items:
        raise UserError(
            f"no {S2_COLLECTION} scenes found for bbox {list(cfg.bbox)} between {cfg.start} and {cfg.end}"
            + (f" with cloud cover <= {cfg.max_cloud}%" if cfg.max_cloud is not None else "")
        )
    dem_items = cat.search(DEM_COLLECTION, cfg.bbox, DEM_WINDOW[0], DEM_WINDOW[1])
    if not dem_items:
        raise UserError(f"no {DEM_COLLECTION} tiles found for bbox {list(cfg.bbox)}")
    cube.check_s2_items(s2_items, S2_L2A_ASSETS)
    cube.check_dem_items(dem_items)
    return s2_items, dem_items


def _resumable(cfg: SweepConfig, fp: str) -> dict[str, Any] | None:
    """The progress record of a partial store of this very sweep at ``cfg.out``, if there is one."""
    if cfg.overwrite or not cfg.out.exists():
        return None
    prog = store.progress(cfg.out)
    if prog["status"] != "in_progress" or prog["fingerprint"] != fp:
        return None
    return prog


def _usable_scenes(
    cfg: SweepConfig,
    s2_items: list[pystac.Item],
    dem_items: list[pystac.Item],
    prior: dict[str, Any] | None,
    sign: catalog.Signer | None,
) -> _Scenes:
    """Scenes to use: those of the original plan when resuming, minus unreadable ones (pre-flight).

    Raises:
        UserError: When no Sentinel-2 scene or no DEM tile can be read.
    """
    scenes = _Scenes(list(s2_items), list(dem_items), dict(prior["skipped"]) if prior else {})
    if prior and prior["planned"]:
        planned = set(prior["planned"])
        scenes.s2 = [it for it in scenes.s2 if it.id in planned]
        scenes.dem = [it for it in scenes.dem if it.id in planned]
    scenes.drop([])
    policy = read_policy(cfg)
    _, s2_skipped = cube.preflight_s2(catalog.sign_items(scenes.s2, sign), S2_L2A_ASSETS, policy)
    _, dem_skipped = cube.preflight_dem(catalog.sign_items(scenes.dem, sign), policy)
    scenes.drop(s2_skipped + dem_skipped)
    for what, left, skipped in (
        ("Sentinel-2 L2A scene", scenes.s2, s2_skipped),
        ("DEM tile", scenes.dem, dem_skipped),
    ):
        if not left:
            detail = "; ".join(f"{sk.id}: {sk.reason}" for sk in skipped)[:600]
            raise UserError(f"no readable {what} (all unreadable after retries): {detail}")
    return scenes


def run_sweep(
    cfg: SweepConfig, client: Client | None = None, signer: catalog.Signer | None = None
) -> SweepSummary:
    """Run a sweep end to end and return its summary.

    Args:
        cfg: The sweep's configuration.
        client: An existing Dask client; None starts one from ``cfg.cluster``.
        signer: Signs items before each region (None: the catalog's default signer).

    Raises:
        UserError: Bad input, no (readable) scenes, unreachable catalog, an existing output, a
            region that failed (the store stays resumable), ...
    """
    t0 = time.perf_counter()
    validate(cfg)
    ckpt, meta, sha = load_meta(cfg)
    cat = catalog.open_catalog(cfg.catalog, signer=signer)
    sign = getattr(cat, "signer", signer)
    s2_items, dem_items = _search(cfg, cat)

    gbox = area_geobox(cfg.bbox)
    shape = (int(gbox.shape[0]), int(gbox.shape[1]))
    crs = str(gbox.crs)
    grid = ChipGrid(overlap=cfg.overlap)
    regions = plan_regions(shape, cfg.block, cfg.region_blocks)
    fp = fingerprint(cfg, sha, shape, crs)
    prior = _resumable(cfg, fp)
    scenes = _usable_scenes(cfg, s2_items, dem_items, prior, sign)
    run_meta = {
        "landslide:model": meta.model,
        "landslide:checkpoint": ckpt.name,
        "landslide:checkpoint_sha256": sha,
        "landslide:threshold": meta.threshold,
        "landslide:bands": list(meta.bands),
        "landslide:start": cfg.start.isoformat(),
        "landslide:end": cfg.end.isoformat(),
        "landslide:bbox": list(cfg.bbox),
        "landslide:event_id": cfg.event_id,
        "landslide:block": cfg.block,
        "landslide:overlap": cfg.overlap,
        "landslide:composite": "median of clear observations (SCL-masked, dilated)",
        "landslide:software_version": __version__,
        store.REGIONS_TOTAL: len(regions),
    }
    assert gbox.crs is not None
    tmpl = store.template(gbox.crs.proj, gbox.transform, shape, cfg.block, run_meta)
    done = set(store.prepare(cfg.out, tmpl, fp, cfg.zarr_format, cfg.overwrite))
    if done:
        print(f"resuming: {len(done)}/{len(regions)} regions already written in {cfg.out}", file=sys.stderr)
    else:
        store.record_plan(cfg.out, [it.id for it in scenes.s2 + scenes.dem])

    device = resolve_device(cfg.device)
    spec = replace(cfg.cluster, device=device)
    model_kw = {"checkpoint": str(ckpt), "sha256": sha, "device": device, "batch_size": cfg.batch_size}
    todo = [r for r in regions if r.index not in done]
    with _client(client, spec) as (cl, threads):
        cl.register_plugin(ModelPlugin(str(ckpt), sha, device, cfg.batch_size, threads))
        chips_before = sum(cl.run(chips_run_here).values())
        t_compute = time.perf_counter()
        for n, region in enumerate(todo, 1):
            try:
                _compute_region(cfg, cl, region, gbox, grid, shape, meta, scenes, model_kw, sign)
            except UserError as exc:
                raise _region_failed(cfg, region, regions, exc, exc.exit_code) from exc
            except Exception as exc:  # a read or worker failure: say which region, stay resumable
                raise _region_failed(cfg, region, regions, exc, 3) from exc
            store.mark_region_done(cfg.out, region.index, scenes.skipped)
            if cfg.progress:
                print(
                    f"region {region.index + 1}/{len(regions)} written ({n}/{len(todo)} this run)",
                    file=sys.stderr,
                )
        compute_s = time.perf_counter() - t_compute
        chips = sum(cl.run(chips_run_here).values()) - chips_before

    scenes_meta = [
        {"id": it.id, "collection": coll, "href": catalog.strip_signature(_self_href(it))}
        for coll, items in ((S2_COLLECTION, scenes.s2), (DEM_COLLECTION, scenes.dem))
        for it in items
    ]
    stats = _result_stats(cfg.out, meta.threshold)
    warnings = _warnings(scenes.skipped, stats["valid_fraction"])
    store.finalise(
        cfg.out,
        {
            "landslide:scenes": scenes_meta,
            store.SKIPPED: sorted(scenes.skipped),
            store.SKIPPED_REASONS: dict(sorted(scenes.skipped.items())),
            "landslide:warnings": warnings,
            "landslide:chips_run": chips,
            "landslide:completed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **{f"landslide:{k}": v for k, v in stats.items()},
        },
    )
    wall = time.perf_counter() - t0
    needed = chips_to_tile_once(shape, grid.chip) * len(todo) / max(len(regions), 1)
    return SweepSummary(
        out=str(cfg.out),
        area_km2=stats["area_km2"],
        valid_fraction=stats["valid_fraction"],
        landslide_km2=stats["landslide_km2"],
        threshold=meta.threshold,
        wall_s=wall,
        chips=chips,
        chips_per_s=chips / compute_s if compute_s > 0 else 0.0,
        overlap_factor=chips / needed if needed else math.nan,
        regions_computed=len(todo),
        regions_total=len(regions),
        scenes=[it.id for it in scenes.s2],
        skipped_scenes=sorted(scenes.skipped),
        warnings=warnings,
    )


def _warnings(skipped: dict[str, str], valid_fraction: float) -> list[str]:
    """What a responder must know about a complete result."""
    out = []
    if skipped:
        out.append(
            f"{len(skipped)} scene(s) skipped as unreadable: {', '.join(sorted(skipped))} "
            "(their pixels are not valid unless another scene covers them)"
        )
    if valid_fraction == 0.0:
        out.append(
            "no clear pixels: every pixel is cloud, shadow, no data or outside the scenes; "
            "nothing could be mapped (valid fraction 0); try a later --end"
        )
    return out


def _region_failed(
    cfg: SweepConfig, region: Region, regions: list[Region], exc: BaseException, exit_code: int
) -> UserError:
    """One line: which region failed and why, how far the store got, how to resume."""
    text = cube.redact(" ".join(str(exc).split()))[:300] or type(exc).__name__
    if not isinstance(exc, UserError):
        text = f"{type(exc).__name__}: {text}"
    written = len(store.progress(cfg.out)["done"])
    return UserError(
        f"region {region.index + 1}/{len(regions)} failed: {text}; {written}/{len(regions)} regions are "
        f"written in {cfg.out} (not complete): re-run the same command to resume",
        exit_code=exit_code,
    )


def _self_href(item: pystac.Item) -> str:
    link = item.get_single_link("self")
    return link.href if link is not None else item.id


class _client:
    """Use a given client, or start one from a spec (context manager)."""

    def __init__(self, client: Client | None, spec: ClusterSpec) -> None:
        self.client, self.spec = client, spec
        self._cm: Any = None

    def __enter__(self) -> tuple[Client, int | None]:
        if self.client is not None:
            return self.client, None
        self._cm = dask_client(self.spec)
        return self._cm.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


def _compute_region(
    cfg: SweepConfig,
    client: Client,
    region: Region,
    gbox: GeoBox,
    grid: ChipGrid,
    shape: tuple[int, int],
    meta: CheckpointMeta,
    scenes: _Scenes,
    model_kw: dict[str, Any],
    sign: catalog.Signer | None,
) -> None:
    """Sign, pre-flight, build, compute and write one region.

    Items are signed just before the region is read (tokens expire) and their headers opened
    with retries; a scene that stays unreadable is dropped from ``scenes`` for the rest of the
    sweep. A region that no scene or no DEM tile covers is left unwritten (it reads as not
    valid) and still counts as done.

    Raises:
        UserError: When every scene covering the region is unreadable.
    """
    m = REGION_MARGIN
    load_box = window_geobox(gbox, region.rows, region.cols, m)
    bb = load_box.extent.to_crs("EPSG:4326").boundingbox
    bounds = (bb.left, bb.bottom, bb.right, bb.top)
    s2 = catalog.sign_items([it for it in scenes.s2 if catalog.intersects(it, bounds)], sign)
    dem = catalog.sign_items([it for it in scenes.dem if catalog.intersects(it, bounds)], sign)
    if not s2 or not dem:
        return
    policy = read_policy(cfg)
    s2, s2_skipped = cube.preflight_s2(s2, S2_L2A_ASSETS, policy)
    dem, dem_skipped = cube.preflight_dem(dem, policy)
    scenes.drop(s2_skipped + dem_skipped)
    if not s2 or not dem:
        reasons = "; ".join(f"{sk.id}: {sk.reason}" for sk in s2_skipped + dem_skipped)
        raise UserError(f"every scene covering it is unreadable after retries ({reasons})")
    cb = cube.build_cube(
        s2, dem, load_box, chunk=read_chunk(load_box, cfg.block), gdal_options=policy.gdal_options()
    )
    stack = cube.stack_bands(cb, meta.bands)
    prob = region_probability(stack, grid, region, shape, cfg.block, model_kw)
    slope = cb["slope_deg"].data.astype(np.float32)[m:-m, m:-m].rechunk(prob.chunks)
    valid = da.isfinite(prob).astype(np.uint8)
    out = xr.Dataset(
        {"probability": (("y", "x"), prob), "valid": (("y", "x"), valid), "slope": (("y", "x"), slope)}
    )
    write = out.to_zarr(
        str(cfg.out), region={"y": slice(*region.rows), "x": slice(*region.cols)},
        compute=False, consolidated=False, zarr_format=cfg.zarr_format,
    )  # fmt: skip
    future = client.compute(write)
    if cfg.progress and sys.stdout.isatty():
        progress(future)
        print()
    future.result()


def _result_stats(path: Path, threshold: float) -> dict[str, float]:
    """Area, valid fraction and landslide area of a written store (read back lazily)."""
    ds = xr.open_zarr(str(path), consolidated=False)
    valid = ds["valid"].data.astype(bool)
    prob = ds["probability"].data
    n = int(np.prod(valid.shape))
    n_valid, n_slide = da.compute(valid.sum(), (prob >= threshold).sum())
    px_km2 = RESOLUTION * RESOLUTION / 1e6
    return {
        "area_km2": n * px_km2,
        "valid_fraction": float(n_valid) / n if n else 0.0,
        "landslide_km2": float(n_slide) * px_km2,
    }


def summary_json(summary: SweepSummary) -> str:
    """The summary as JSON."""
    return json.dumps(asdict(summary), indent=2)
