"""End-to-end sweeps through the real path: local COGs -> STAC -> odc-stac cube -> model -> Zarr.

Each run starts its own ``LocalCluster`` of worker processes (:func:`pipeline.cluster.dask_client`,
the one the CLI uses) and calls :func:`pipeline.sweep.run_sweep` with it, while
:class:`bench.memory.PeakTreeRSS` samples the resident memory of this process and all its
children (the nanny and worker processes).
"""

from __future__ import annotations

import gc
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.memory import PeakTreeRSS
from bench.scene import BenchScene
from pipeline.cluster import ClusterSpec, dask_client
from pipeline.demo import scene as demo
from pipeline.geo import BBox
from pipeline.predict import release_free_memory
from pipeline.sweep import SweepConfig, run_sweep
from pipeline.tiling import grid_for_model


@dataclass(frozen=True)
class SweepRun:
    """Figures of one benchmark sweep.

    Attributes:
        area_km2: Area of the output mosaic.
        chips: Chips the model ran (overlaps included).
        compute_s: Seconds of region computation (cube, model, blending, Zarr writes).
        wall_s: Seconds of ``run_sweep`` (search, model load on workers, compute, statistics).
        overlap_factor: Chips run over chips needed to tile the area once.
        peak_rss_mb: Peak resident memory of the process tree during the run.
        workers: Worker processes.
        block: Block size (pixels).
        foreign_cores: Average cores used by other processes on the machine meanwhile.
        worker_model_chips_per_s: The model alone, measured in the sweep's own worker just before
            the sweep (:func:`worker_model_speed`; 0 when not asked for).
        worker_model_full_tile_chips_per_s: For the U-Net, the model alone on full tiles only, in
            the same worker (the sweep's tile mix is ``worker_model_chips_per_s``).
        rss_at_peak_mb: Resident MiB of each process at the peak (``main``: the client, the
            scheduler and the nannies; ``child <pid>``: a worker).
    """

    area_km2: float
    chips: int
    compute_s: float
    wall_s: float
    overlap_factor: float
    peak_rss_mb: float
    workers: int
    block: int
    foreign_cores: float = 0.0
    worker_model_chips_per_s: float = 0.0
    rss_at_peak_mb: dict[str, float] = field(default_factory=dict)
    worker_model_full_tile_chips_per_s: float = 0.0

    @property
    def chips_per_s(self) -> float:
        """Chips per second of compute."""
        return self.chips / self.compute_s

    @property
    def km2_per_s(self) -> float:
        """Output area per second of compute."""
        return self.area_km2 / self.compute_s

    @property
    def s_per_km2(self) -> float:
        """Seconds of compute per km2 of output."""
        return self.compute_s / self.area_km2


def bench_sweep(
    scene: BenchScene,
    checkpoint: Path,
    out: Path,
    *,
    workers: int,
    block: int,
    batch_size: int,
    region_blocks: int = 4,
    probe_tile: int | None = None,
    model_kind: str = "unet",
) -> SweepRun:
    """Sweep a tiled scene once on a fresh local cluster and return its figures.

    With ``probe_tile`` (the side of the tiles the sweep runs: 528 for the U-Net, 128 for chips)
    the model alone is first timed in the same worker process (``workers`` must be 1): the
    end-to-end ratio then compares two figures from one process, free of the few percent by
    which the same model's speed differs from process to process on this machine. For the
    U-Net (``probe_tile > 128``) the probe runs the sweep's own tile mix (full tiles and those
    cut at the area's edge, :func:`tile_mix`) and also full tiles alone.
    """
    shutil.rmtree(out, ignore_errors=True)
    # The client starts from a clean heap: what earlier bench phases (a model timed in this
    # process) freed is handed back to the OS, so the peak is the sweep's own.
    gc.collect()
    release_free_memory()
    cfg = SweepConfig(
        bbox=BBox(*scene.bbox), start=demo.DEMO_START, end=demo.DEMO_END, out=out,
        catalog=str(scene.catalog), checkpoint=checkpoint, block=block, batch_size=batch_size,
        region_blocks=region_blocks, device="cpu", progress=False,
    )  # fmt: skip
    probe, probe_full = 0.0, 0.0
    tiles = tile_mix(model_kind, scene.shape, block) if probe_tile and probe_tile > 128 else None
    with PeakTreeRSS() as rss, dask_client(ClusterSpec(n_workers=workers, device="cpu")) as (client, threads):
        if probe_tile is not None:
            probe_full = client.submit(
                worker_model_speed, str(checkpoint), probe_tile, batch_size, threads, pure=False
            ).result()
            probe = probe_full
            if tiles:
                probe = client.submit(
                    worker_model_speed, str(checkpoint), probe_tile, batch_size, threads, tiles, pure=False
                ).result()
        summary = run_sweep(cfg, client=client)
    shutil.rmtree(out, ignore_errors=True)
    compute_s = summary.chips / summary.chips_per_s if summary.chips_per_s else summary.wall_s
    return SweepRun(
        area_km2=summary.area_km2, chips=summary.chips, compute_s=compute_s, wall_s=summary.wall_s,
        overlap_factor=summary.overlap_factor, peak_rss_mb=rss.peak_mb, workers=workers, block=block,
        foreign_cores=rss.foreign_cores, worker_model_chips_per_s=probe, rss_at_peak_mb=rss.at_peak_mb,
        worker_model_full_tile_chips_per_s=probe_full,
    )  # fmt: skip


def tile_mix(model: str, shape: tuple[int, int], block: int) -> list[tuple[int, int]]:
    """``(rows, cols)`` of every tile a sweep of an area of ``shape`` runs (before skipping empty ones)."""
    grid = grid_for_model(model, block)
    axes = []
    for size in shape:
        blocks = [(a, min(a + block, size)) for a in range(0, size, block)]
        axes.append([grid.tile_size(k, size) for a, b in blocks for k in grid.chips_touching(a, b, size)])
    return [(hy, hx) for hy in axes[0] for hx in axes[1]]


def worker_model_speed(
    checkpoint: str, tile: int, batch: int, threads: int | None, tiles: list[tuple[int, int]] | None = None
) -> float:
    """The model's median chips/s in this process (run as a task on the sweep's worker).

    The same measurement as :mod:`bench.model_speed`: ``tile`` > 128 times one tile per pass,
    128 times a batch of ``batch`` chips; with ``tiles``, those tiles
    (:func:`bench.model_speed.tile_mix_chips_per_s`). The model is this process's copy
    (:func:`pipeline.predict.process_model`), the very one the sweep's worker plugin then uses:
    a worker holds one model, as in a sweep without the probe.
    """
    import torch

    from bench.model_speed import chips_per_s, tile_chips_per_s, tile_mix_chips_per_s
    from pipeline.models.checkpoint import sha256_file
    from pipeline.models.ref import ModelRef
    from pipeline.predict import process_model

    if threads:
        torch.set_num_threads(threads)
    model = process_model(ModelRef(checkpoint, sha256_file(checkpoint), "cpu", batch), prepare=True)
    if tiles:
        return tile_mix_chips_per_s(model, tiles, min_s=4.0, max_iters=4)
    if tile > 128:
        return tile_chips_per_s(model, tile, min_s=4.0, max_iters=4)
    return chips_per_s(model, batch, min_s=4.0, max_iters=4)
