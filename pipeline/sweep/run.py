"""The executor: carry a :class:`~pipeline.sweep.plan.SweepPlan` out, region by region.

:func:`run_sweep` searches once (or takes the items a caller already found), plans, takes the
store's lock, prepares or resumes the store (recomputing recorded regions whose checksums no
longer match), computes the missing regions one after another, and completes the store. The
store is marked ``complete`` only at the end (:mod:`pipeline.store.writer`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pystac
from distributed import Client

from pipeline import catalog, cube, store
from pipeline.bands import S2_L2A_ASSETS
from pipeline.cluster import dask_client
from pipeline.cube import DEM_COLLECTION, S2_COLLECTION
from pipeline.errors import UserError
from pipeline.models.checkpoint import (
    CheckpointError,
    read_meta,
    sha256_file,
    shipped_checkpoint,
    verify_tensor_digest,
)
from pipeline.predict import ModelPlugin, chips_run_here, resolve_device
from pipeline.sweep.config import DEM_WINDOW, SweepConfig
from pipeline.sweep.plan import Checkpoint, Region, Scenes, SweepPlan, plan_sweep, requested_area_km2
from pipeline.sweep.regions import UsableScenes, compute_region, usable_scenes
from pipeline.sweep.summary import SweepSummary, result_stats, result_warnings
from pipeline.tiling import chips_to_tile_once


def load_checkpoint_info(cfg: SweepConfig) -> Checkpoint:
    """The checkpoint to use, its metadata and SHA-256 (nothing is unpickled).

    Its tensor data is checked against the digest in its header here, before any sweep work.

    Raises:
        UserError: An unreadable or corrupt checkpoint, or one of another model than ``cfg.model``.
    """
    path = Path(cfg.checkpoint) if cfg.checkpoint else shipped_checkpoint()
    try:
        meta = read_meta(path)
        verify_tensor_digest(path)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    if cfg.model and cfg.model != meta.model:
        raise UserError(f"--model {cfg.model} does not match checkpoint {path.name} (a {meta.model!r} model)")
    return Checkpoint(path, meta, sha256_file(path))


def search_scenes(cfg: SweepConfig, cat: catalog.Catalog) -> Scenes:
    """The catalog's answers for a sweep: post-event Sentinel-2 items and DEM tiles over the area.

    The one search of a sweep; a caller that searched already (a flow waiting for imagery)
    passes the result to :func:`run_sweep`. Empty answers are returned as they are.
    """
    s2 = cat.search(S2_COLLECTION, cfg.bbox, cfg.start, cfg.end, max_cloud=cfg.max_cloud)
    dem = cat.search(DEM_COLLECTION, cfg.bbox, DEM_WINDOW[0], DEM_WINDOW[1]) if s2 else []
    return Scenes(tuple(s2), tuple(dem))


def check_scenes(cfg: SweepConfig, scenes: Scenes) -> None:
    """Refuse empty or malformed answers before anything is written.

    Raises:
        UserError: No scenes, no DEM tiles, or items that fail the checks.
    """
    if not scenes.s2:
        raise UserError(
            f"no {S2_COLLECTION} scenes found for bbox {list(cfg.bbox)} between {cfg.start} and {cfg.end}"
            + (f" with cloud cover <= {cfg.max_cloud}%" if cfg.max_cloud is not None else "")
        )
    if not scenes.dem:
        raise UserError(f"no {DEM_COLLECTION} tiles found for bbox {list(cfg.bbox)}")
    cube.check_s2_items(list(scenes.s2), S2_L2A_ASSETS)
    cube.check_dem_items(list(scenes.dem))


def run_sweep(
    cfg: SweepConfig,
    client: Client | None = None,
    signer: catalog.Signer | None = None,
    scenes: Scenes | None = None,
) -> SweepSummary:
    """Run a sweep end to end and return its summary.

    Args:
        cfg: The sweep's configuration.
        client: An existing Dask client; None starts one from ``cfg.cluster``.
        signer: Signs items before each region (None: the catalog's default signer).
        scenes: The catalog's answers when the caller already searched (a flow that waited for
            imagery); None searches ``cfg.catalog`` once.

    Raises:
        UserError: Bad input, no (readable) scenes, unreachable catalog, an existing output,
            another sweep writing the same store, a region that failed (the store stays
            resumable), ...
    """
    t0 = time.perf_counter()
    ckpt = load_checkpoint_info(cfg)
    cat = catalog.open_catalog(cfg.catalog, signer=signer)
    sign = getattr(cat, "signer", signer)
    found = scenes if scenes is not None else search_scenes(cfg, cat)
    check_scenes(cfg, found)
    plan = plan_sweep(cfg, ckpt, found)
    with store.StoreLock(cfg.out) as lock:
        if lock.stale is not None:
            print(f"note: took over the lock of a killed sweep ({lock.stale.describe()})", file=sys.stderr)
        return _run_locked(plan, client, sign, t0)


def _run_locked(
    plan: SweepPlan, client: Client | None, sign: catalog.Signer | None, t0: float
) -> SweepSummary:
    cfg, regions = plan.config, plan.regions
    prior = _resumable(plan)
    usable = usable_scenes(cfg, plan.scenes, prior, sign)
    assert plan.gbox.crs is not None
    tmpl = store.template(plan.gbox.crs.proj, plan.gbox.transform, plan.shape, cfg.block, plan.run_meta())
    prog = store.prepare(cfg.out, tmpl, plan.fingerprint, cfg.zarr_format, cfg.overwrite)
    done = set(prog.done)
    if done:
        damaged = store.damaged_regions(cfg.out, prog, {r.index: r.window for r in regions})
        store.forget_regions(cfg.out, damaged)
        done -= set(damaged)
        store.record_missing_checksums(cfg.out, {r.index: r.window for r in regions if r.index in done})
        print(f"resuming: {len(done)}/{len(regions)} regions already written in {cfg.out}", file=sys.stderr)
        if damaged:
            names = ", ".join(str(i + 1) for i in damaged)
            print(f"damaged: region(s) {names} no longer match their checksums; recomputing", file=sys.stderr)
    else:
        store.record_plan(cfg.out, [it.id for it in (*usable.s2, *usable.dem)])
    done |= _reuse_regions(plan, done)

    todo = [r for r in regions if r.index not in done]
    with _client(client, cfg) as (cl, threads):
        cl.register_plugin(ModelPlugin(plan.model, threads))
        chips_before = sum(cl.run(chips_run_here).values())
        t_compute = time.perf_counter()
        for n, region in enumerate(todo, 1):
            try:
                compute_region(plan, cl, region, usable, sign)
            except UserError as exc:
                raise _region_failed(cfg, region, regions, exc, exc.exit_code) from exc
            except Exception as exc:  # a read or worker failure: say which region, stay resumable
                raise _region_failed(cfg, region, regions, exc, 3) from exc
            store.mark_region_done(cfg.out, region.index, region.window, usable.skipped)
            if cfg.progress:
                print(
                    f"region {region.index + 1}/{len(regions)} written ({n}/{len(todo)} this run)",
                    file=sys.stderr,
                )
        compute_s = time.perf_counter() - t_compute
        chips = sum(cl.run(chips_run_here).values()) - chips_before
    return _complete(plan, usable, len(todo), chips, compute_s, t0)


def _reuse_regions(plan: SweepPlan, done: set[int]) -> set[int]:
    """Regions a partial sweep does not compute (``only_regions``): linked from ``base``, recorded done.

    Only regions not recorded yet are linked (a resumed run links what a killed one had not).
    """
    from pipeline.store.links import link_regions, mark_regions_reused

    cfg = plan.config
    if cfg.only_regions is None:
        return set()
    keep = set(cfg.only_regions)
    reused = [r for r in plan.regions if r.index not in keep and r.index not in done]
    if cfg.base is not None and reused:
        base, here = store.store_transform(store.open_result(cfg.base)), plan.gbox.transform
        offset = (round((base.f - here.f) / here.e), round((base.c - here.c) / here.a))
        link_regions(cfg.base, cfg.out, [r.window for r in reused], offset)
    if reused:
        mark_regions_reused(cfg.out, [r.index for r in reused])
    return {r.index for r in reused}


def _complete(
    plan: SweepPlan, usable: UsableScenes, computed: int, chips: int, compute_s: float, t0: float
) -> SweepSummary:
    """Record the outcome, mark the store complete and say what was done."""
    cfg = plan.config
    stats = result_stats(cfg.out, plan.threshold)
    warnings = result_warnings(usable.skipped, stats.valid_fraction)
    requested = requested_area_km2(cfg.bbox)
    scenes_meta = tuple(
        {"id": it.id, "collection": coll, "href": catalog.strip_signature(_self_href(it))}
        for coll, items in ((S2_COLLECTION, usable.s2), (DEM_COLLECTION, usable.dem))
        for it in items
    )
    store.finalise(
        cfg.out,
        store.Outcome(
            scenes=scenes_meta, skipped_scenes=tuple(sorted(usable.skipped)),
            skipped_reasons=dict(sorted(usable.skipped.items())), warnings=tuple(warnings),
            chips_run=chips, completed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            area_km2=stats.area_km2, requested_area_km2=requested, valid_fraction=stats.valid_fraction,
            landslide_km2=stats.landslide_km2,
        ),
    )  # fmt: skip
    regions = plan.regions
    needed = chips_to_tile_once(plan.shape) * computed / max(len(regions), 1)
    return SweepSummary(
        out=str(cfg.out), area_km2=stats.area_km2, requested_area_km2=requested,
        valid_fraction=stats.valid_fraction, landslide_km2=stats.landslide_km2,
        threshold=plan.threshold, wall_s=time.perf_counter() - t0, chips=chips,
        chips_per_s=chips / compute_s if compute_s > 0 else 0.0,
        overlap_factor=chips / needed if needed else math.nan, regions_computed=computed,
        regions_total=len(regions), scenes=[it.id for it in usable.s2],
        skipped_scenes=sorted(usable.skipped), warnings=warnings, base_rate=cfg.base_rate,
    )  # fmt: skip


def _resumable(plan: SweepPlan) -> store.Progress | None:
    """The progress record of a partial store of this very sweep at ``out``, if there is one."""
    cfg = plan.config
    if cfg.overwrite or not cfg.out.exists():
        return None
    prog = store.progress(cfg.out)
    if prog.status != store.IN_PROGRESS or prog.fingerprint != plan.fingerprint:
        return None
    return prog


def _region_failed(
    cfg: SweepConfig, region: Region, regions: tuple[Region, ...], exc: BaseException, exit_code: int
) -> UserError:
    """One line: which region failed and why, how far the store got, how to resume."""
    text = cube.redact(" ".join(str(exc).split()))[:300] or type(exc).__name__
    if not isinstance(exc, UserError):
        text = f"{type(exc).__name__}: {text}"
    written = len(store.progress(cfg.out).done)
    return UserError(
        f"region {region.index + 1}/{len(regions)} failed: {text}; {written}/{len(regions)} regions are "
        f"written in {cfg.out} (not complete): re-run the same command to resume",
        exit_code=exit_code,
    )


def _self_href(item: pystac.Item) -> str:
    link = item.get_single_link("self")
    return link.href if link is not None else item.id


@contextmanager
def _client(client: Client | None, cfg: SweepConfig) -> Iterator[tuple[Client, int | None]]:
    """Use a given client, or start one from the configuration's cluster spec.

    A local cluster runs on this machine, so ``device="auto"`` is resolved here only to choose
    its kind (a ``LocalCUDACluster`` when a GPU is visible); the workers resolve it again for
    the model. With a scheduler address nothing is resolved on the client.

    Ctrl-C: a terminal sends SIGINT to the whole process group, local workers included. They
    are started with SIGINT ignored (the client process alone handles it), and on the
    interrupt the loggers that report a cluster torn down mid-task are silenced, so that the
    CLI's one line is all the user sees.
    """
    if client is not None:
        yield client, None
        return
    spec = cfg.cluster
    if not spec.scheduler:
        spec = replace(spec, device=resolve_device(cfg.device))
    with ExitStack() as stack:
        with _children_ignore_sigint():
            pair = stack.enter_context(dask_client(spec))
        try:
            yield pair
        except KeyboardInterrupt:
            quiet_shutdown()
            raise


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Ignore SIGINT while child processes start (they keep it ignored; Python leaves it so)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def quiet_shutdown() -> None:
    """Silence the loggers that report a cluster torn down mid-task (after Ctrl-C)."""
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
