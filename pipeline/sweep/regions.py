"""One region of a sweep: sign, pre-flight, build its cube, ``map_overlap`` the model, write.

Each region is computed with its own small Dask graph and its own freshly signed items
(Planetary Computer tokens expire). Scenes that stay unreadable are left out for the rest of the
sweep (:class:`UsableScenes`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import pystac
from distributed import Client, progress

from pipeline import catalog, cube, store
from pipeline.bands import S2_L2A_ASSETS
from pipeline.errors import UserError
from pipeline.models.checkpoint import shift_probability
from pipeline.models.ref import ModelRef
from pipeline.predict import predict_block
from pipeline.sweep.config import REGION_MARGIN, SweepConfig
from pipeline.sweep.plan import Region, Scenes, SweepPlan, margin_chunks, read_chunk, window_geobox
from pipeline.tiling import ChipGrid, chunk_bounds


def read_policy(cfg: SweepConfig) -> cube.ReadPolicy:
    """The COG reading policy of a sweep (retries, backoff, timeout)."""
    return cube.ReadPolicy(
        max_retry=cfg.read_retries, retry_delay_s=cfg.retry_delay_s, timeout_s=cfg.read_timeout_s
    )


@dataclass
class UsableScenes:
    """The scenes a running sweep uses, and those it left out (id -> reason)."""

    s2: list[pystac.Item]
    dem: list[pystac.Item]
    skipped: dict[str, str] = field(default_factory=dict)

    def drop(self, skipped: list[cube.SkippedScene]) -> None:
        """Leave out newly skipped scenes for the rest of the sweep."""
        for sk in skipped:
            self.skipped.setdefault(sk.id, f"{sk.collection} {sk.reason}")
        self.s2 = [it for it in self.s2 if it.id not in self.skipped]
        self.dem = [it for it in self.dem if it.id not in self.skipped]


def usable_scenes(
    cfg: SweepConfig, scenes: Scenes, prior: store.Progress | None, sign: catalog.Signer | None
) -> UsableScenes:
    """Scenes to use: those of the original plan when resuming, minus unreadable ones (pre-flight).

    Raises:
        UserError: When no Sentinel-2 scene or no DEM tile can be read.
    """
    usable = UsableScenes(list(scenes.s2), list(scenes.dem), dict(prior.skipped) if prior else {})
    if prior and prior.planned:
        planned = set(prior.planned)
        usable.s2 = [it for it in usable.s2 if it.id in planned]
        usable.dem = [it for it in usable.dem if it.id in planned]
    usable.drop([])
    policy = read_policy(cfg)
    _, s2_skipped = cube.preflight_s2(catalog.sign_items(usable.s2, sign), S2_L2A_ASSETS, policy)
    _, dem_skipped = cube.preflight_dem(catalog.sign_items(usable.dem, sign), policy)
    usable.drop(s2_skipped + dem_skipped)
    for what, left, skipped in (
        ("Sentinel-2 L2A scene", usable.s2, s2_skipped),
        ("DEM tile", usable.dem, dem_skipped),
    ):
        if not left:
            detail = "; ".join(f"{sk.id}: {sk.reason}" for sk in skipped)[:600]
            raise UserError(f"no readable {what} (all unreadable after retries): {detail}")
    return usable


def region_probability(
    stack: da.Array, grid: ChipGrid, region: Region, shape: tuple[int, int], block: int, model: ModelRef
) -> da.Array:
    """``map_overlap`` the model over a region's margin-extended band stack; return its core.

    Args:
        stack: ``[C, Y, X]`` bands of the region grown by ``REGION_MARGIN`` on every side.
        grid: The global chip grid.
        region: The region (its window in the area's pixel coordinates).
        shape: Shape of the whole area.
        block: Block size.
        model: The model reference every task uses (the weights stay on the workers).

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
        offset=(region.rows[0] - m, region.cols[0] - m), shape=shape, model=model,
    )  # fmt: skip
    return prob[m:-m, m:-m]


def compute_region(
    plan: SweepPlan, client: Client, region: Region, scenes: UsableScenes, sign: catalog.Signer | None
) -> None:
    """Sign, pre-flight, build, compute and write one region.

    Items are signed just before the region is read (tokens expire) and their headers opened
    with retries; a scene that stays unreadable is dropped from ``scenes`` for the rest of the
    sweep. A region that no scene or no DEM tile covers is left unwritten (it reads as not
    valid) and still counts as done.

    Raises:
        UserError: When every scene covering the region is unreadable.
    """
    cfg, m = plan.config, REGION_MARGIN
    load_box = window_geobox(plan.gbox, region.rows, region.cols, m)
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
    stack = cube.stack_bands(cb, plan.checkpoint.meta.bands)
    prob = region_probability(stack, plan.grid, region, plan.shape, cfg.block, plan.model)
    if plan.prior_shift:  # --base-rate: every probability moved by the same logit offset
        prob = da.map_blocks(shift_probability, prob, shift=plan.prior_shift, dtype=np.float32)
    slope = cb["slope_deg"].data.astype(np.float32)[m:-m, m:-m].rechunk(prob.chunks)
    valid = da.isfinite(prob).astype(np.uint8)
    write = store.region_write(cfg.out, prob, valid, slope, region.window, cfg.zarr_format)
    future = client.compute(write)
    if cfg.progress and sys.stdout.isatty():
        progress(future)
        print()
    future.result()
