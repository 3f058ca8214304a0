"""One model's own speed, then its end-to-end sweeps: the part of :mod:`bench.run` per model.

``python -m bench.e2e --models unet hybrid`` runs just this part, on the bench's main scene,
and prints each sweep's peak resident memory (all processes, and each process at the peak)
with its throughput: the memory figures of the full bench without its other phases.

The model is written and timed in a child process (:func:`time_model_in_child`),
so the bench process never holds it: what the client holds at a sweep's peak is the sweep's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.checkpoints import BENCH_MODELS, bench_config
from bench.child import in_child
from bench.model_speed import ModelSpeed, measure_model
from bench.scene import BenchScene, build_tiled_scene
from bench.sweeps import SweepRun, bench_sweep
from pipeline.tiling import FULLY_CONVOLUTIONAL, grid_for_model

#: The end-to-end and peer measurements use 2 x 2 demo scenes (~98 km2).
MAIN_REPS = (2, 2)


@dataclass(frozen=True)
class Timing:
    """How a model-only figure is timed.

    Attributes:
        ceiling_gflops: The machine's matmul ceiling (for the model's FLOP utilisation).
        batches: Batch sizes tried.
        min_s: Seconds timed at least per batch size.
        max_iters: Passes at most per batch size.
        block: Sweep block size in pixels.
        threads: Torch intra-op threads of the child that times the model (None: torch's default).
    """

    ceiling_gflops: float
    batches: tuple[int, ...]
    min_s: float
    max_iters: int
    block: int = 2048
    threads: int | None = None


def time_model_in_child(
    name: str, config: dict[str, Any], checkpoint: Path, timing: Timing, *, max_iters: int | None = None,
    tile: int = 128,
) -> ModelSpeed:  # fmt: skip
    """Write ``name``'s seeded random checkpoint to ``checkpoint`` and time it, in a child process.

    Writing the checkpoint and :func:`bench.model_speed.measure_model` each build the whole model;
    run in a spawned child (:func:`bench.child.in_child`), neither leaves it in the bench process,
    whose resident memory counts in the sweep measured next. The child uses ``timing.threads``.
    """
    iters = timing.max_iters if max_iters is None else max_iters
    args = (name, config, checkpoint, timing.ceiling_gflops, timing.batches, timing.min_s, iters, tile, True)
    return in_child(measure_model, *args, torch_threads=timing.threads)


def sweep_figures(run: SweepRun) -> dict[str, Any]:
    """The figures of one sweep as the result records them."""
    return {
        "km2_per_s": run.km2_per_s, "chips_per_s": run.chips_per_s, "overlap_factor": run.overlap_factor,
        "s_per_km2": run.s_per_km2, "peak_rss_mb": run.peak_rss_mb, "area_km2": run.area_km2,
        "chips": run.chips, "compute_s": run.compute_s, "wall_s": run.wall_s, "workers": run.workers,
        "block": run.block, "foreign_cores": run.foreign_cores, "rss_at_peak_mb": run.rss_at_peak_mb,
    }  # fmt: skip


def end_to_end_figures(run: SweepRun, batch: int, model_chips_per_s: float) -> dict[str, Any]:
    """End-to-end figures of a sweep against the model alone.

    ``end_to_end_over_model`` divides by the model's speed measured in the sweep's own worker
    just before it (same process); ``end_to_end_over_model_main`` by the bench's model-only
    figure (timed in a child of the bench process), which differs from process to process by a
    few percent here.
    """
    worker = run.worker_model_chips_per_s or model_chips_per_s
    out = {
        **sweep_figures(run), "batch": batch, "model_chips_per_s": worker,
        "model_chips_per_s_main": model_chips_per_s,
        "end_to_end_over_model": run.chips_per_s / worker,
        "end_to_end_over_model_main": run.chips_per_s / model_chips_per_s,
    }  # fmt: skip
    if run.worker_model_full_tile_chips_per_s:  # the U-Net: also against full tiles alone
        out["model_full_tile_chips_per_s"] = run.worker_model_full_tile_chips_per_s
        out["end_to_end_over_model_full_tiles"] = run.chips_per_s / run.worker_model_full_tile_chips_per_s
    return out


def model_end_to_end(
    name: str, config: dict[str, Any], checkpoint: Path, scene: BenchScene, work: Path, timing: Timing,
    sweeps: int = 1,
) -> tuple[ModelSpeed, list[SweepRun]]:  # fmt: skip
    """Write ``name``'s random checkpoint, time the model alone, then sweep ``scene`` with it.

    The model-only figure comes from a child process; each sweep runs on a fresh cluster with
    the model timed first in its own worker (on the sweep's tiles: 528-px tiles for a fully
    convolutional model, 128-px chips for the others). The checkpoint is left at ``checkpoint``.

    Returns:
        The model-only figures and the ``sweeps`` sweeps, in the order they ran.
    """
    fully_conv = name in FULLY_CONVOLUTIONAL
    tile = grid_for_model(name, timing.block).chip if fully_conv else 128
    # the U-Net (fast) is timed over twice as many passes as the Clay-based models
    iters = timing.max_iters * 2 if fully_conv else timing.max_iters
    speed = time_model_in_child(name, config, checkpoint, timing, max_iters=iters, tile=tile)
    runs: list[SweepRun] = []
    for _ in range(sweeps):
        runs.append(bench_sweep(scene, checkpoint, work / f"{name}.zarr", workers=1, block=timing.block,
                                batch_size=speed.batch, probe_tile=tile, model_kind=name))  # fmt: skip
    return speed, runs


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.e2e``: each model's speed and one end-to-end sweep, with its memory, as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=main.__doc__)
    p.add_argument("--models", nargs="+", default=["unet", "hybrid"], choices=BENCH_MODELS)
    p.add_argument("--quick", action="store_true", help="tiny models, the demo scene, one pass per batch")
    p.add_argument("--block", type=int, default=2048, help="sweep block size in pixels")
    args = p.parse_args(argv)
    quick = args.quick
    timing = Timing(
        ceiling_gflops=1.0, batches=(1, 2, 4, 8), min_s=0.0 if quick else 4.0, max_iters=1 if quick else 4,
        block=args.block, threads=torch.get_num_threads(),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="landslide-e2e-") as tmp:
        work = Path(tmp)
        scene = build_tiled_scene(work / "scene", *((1, 1) if quick else MAIN_REPS))
        for name in args.models:
            t0 = time.perf_counter()
            ckpt = work / f"{name}.safetensors"
            speed, (run,) = model_end_to_end(name, bench_config(name, quick), ckpt, scene, work, timing)
            figures = end_to_end_figures(run, speed.batch, speed.chips_per_s)
            keep = ("peak_rss_mb", "rss_at_peak_mb", "batch", "chips_per_s", "model_chips_per_s",
                    "model_chips_per_s_main", "end_to_end_over_model", "foreign_cores")  # fmt: skip
            out = {k: figures[k] for k in keep} | {"model_by_batch": asdict(speed)["by_batch"],
                   "elapsed_s": time.perf_counter() - t0, "loadavg": os.getloadavg()}  # fmt: skip
            print(json.dumps({name: out}), flush=True)
            ckpt.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
