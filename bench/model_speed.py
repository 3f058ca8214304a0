"""Model-only throughput: chips/s at each batch size through the production inference path.

Chips go through :meth:`pipeline.predict.LoadedModel.probabilities` (normalisation, batching,
the CPU graph optimisation of :func:`pipeline.predict.load_model`), with data already in
memory: the ceiling the end-to-end sweep is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.memory import PeakTreeRSS
from pipeline.models.flops import measure
from pipeline.predict import LoadedModel, load_model


@dataclass
class ModelSpeed:
    """Throughput of one model.

    Attributes:
        batch: Best batch size.
        chips_per_s: Chips/s at ``batch``.
        gflop_per_chip: Forward GFLOP per 128-px chip (FlopCounterMode).
        mfu: ``chips_per_s * gflop_per_chip / ceiling``.
        by_batch: Chips/s for every batch size tried.
        load_s: Seconds to load and optimise the model.
        foreign_cores: Average cores used by other processes on the machine meanwhile.
        tile: Tile side a sweep runs this model on (128 for chips).
        tile_chips_per_s: 128-px-chip equivalents/s on one tile per pass (0 when ``tile == 128``).
    """

    batch: int
    chips_per_s: float
    gflop_per_chip: float
    mfu: float
    by_batch: dict[int, float] = field(default_factory=dict)
    load_s: float = 0.0
    foreign_cores: float = 0.0
    tile: int = 128
    tile_chips_per_s: float = 0.0


def chips_per_s(model: LoadedModel, batch: int, min_s: float, max_iters: int, warmup: int = 1) -> float:
    """Median single-pass chips/s of ``model`` at ``batch`` (after ``warmup`` passes).

    The median, not the best pass: a sweep is a sustained run, and on a shared machine the best
    of a few passes sits a few percent above what the model sustains.

    Passes repeat until ``min_s`` seconds have been timed or ``max_iters`` passes ran.
    """
    rng = np.random.default_rng(0)
    chips = (1.0 + 0.5 * rng.standard_normal((batch, len(model.meta.bands), 128, 128))).astype(np.float32)
    model.batch_size = batch
    for _ in range(warmup):
        model.probabilities(chips)
    rates: list[float] = []
    spent = 0.0
    while len(rates) < max_iters and (spent < min_s or not rates):
        t0 = time.perf_counter()
        model.probabilities(chips)
        dt = time.perf_counter() - t0
        rates.append(batch / dt)
        spent += dt
    return float(np.median(rates))


def measure_model(
    name: str,
    config: dict[str, object],
    checkpoint: Path,
    ceiling_gflops: float,
    batches: tuple[int, ...],
    min_s: float,
    max_iters: int,
    tile: int = 128,
    write_checkpoint: bool = False,
) -> ModelSpeed:
    """Sweep batch sizes for one model and report the best, with its FLOP utilisation.

    With ``tile > 128`` (a fully convolutional model's sweep tile) also measure one tile per pass.
    With ``write_checkpoint``, first write ``name``'s seeded random checkpoint to ``checkpoint``
    (:func:`bench.checkpoints.random_checkpoint`).
    """
    if write_checkpoint:
        from bench.checkpoints import random_checkpoint

        random_checkpoint(name, dict(config), checkpoint)
    cost = measure(name, dict(config))
    t0 = time.perf_counter()
    loaded = load_model(checkpoint, "cpu" if not torch.cuda.is_available() else "cuda", batches[-1])
    load_s = time.perf_counter() - t0
    with PeakTreeRSS() as monitor:
        by_batch = {b: chips_per_s(loaded, b, min_s, max_iters) for b in batches}
        tiled = tile_chips_per_s(loaded, tile, min_s, max_iters) if tile > 128 else 0.0
    best = max(by_batch, key=lambda b: by_batch[b])
    del loaded
    rate = by_batch[best]
    return ModelSpeed(
        batch=best, chips_per_s=rate, gflop_per_chip=cost.gflop_per_chip,
        mfu=rate * cost.gflop_per_chip / ceiling_gflops, by_batch=by_batch, load_s=load_s,
        foreign_cores=monitor.foreign_cores, tile=tile, tile_chips_per_s=tiled,
    )  # fmt: skip


def tile_chips_per_s(model: LoadedModel, tile: int, min_s: float, max_iters: int) -> float:
    """Median 128-px-chip-equivalents/s of ``model`` on one ``tile x tile`` input per pass.

    What a fully convolutional model runs in a sweep (:func:`pipeline.tiling.grid_for_model`):
    the figure its end-to-end throughput is compared with.
    """
    rng = np.random.default_rng(0)
    x = (1.0 + 0.5 * rng.standard_normal((1, len(model.meta.bands), tile, tile))).astype(np.float32)
    model.probabilities(x)
    rates: list[float] = []
    spent = 0.0
    while len(rates) < max_iters and (spent < min_s or not rates):
        t0 = time.perf_counter()
        model.probabilities(x)
        dt = time.perf_counter() - t0
        rates.append(tile * tile / 128**2 / dt)
        spent += dt
    return float(np.median(rates))


def tile_mix_chips_per_s(
    model: LoadedModel, tiles: list[tuple[int, int]], min_s: float, max_iters: int
) -> float:
    """Median 128-px-chip-equivalents/s of ``model`` on the very tiles a sweep runs.

    ``tiles`` are the ``(rows, cols)`` of every tile of the area (:func:`bench.sweeps.tile_mix`):
    full tiles and the smaller ones cut at the area's edge, which run fewer pixels per second
    than full tiles. Each pass runs them grouped by size, as ``predict_block`` does, after one
    pass that meets every size once.
    """
    rng = np.random.default_rng(0)
    groups: dict[tuple[int, int], int] = {}
    for shape in tiles:
        groups[shape] = groups.get(shape, 0) + 1
    c = len(model.meta.bands)
    inputs = [
        (1.0 + 0.5 * rng.standard_normal((n, c, *shape))).astype(np.float32) for shape, n in groups.items()
    ]
    pixels = sum(hy * hx for hy, hx in tiles)
    for x in inputs:
        model.probabilities(x)
    rates: list[float] = []
    spent = 0.0
    while len(rates) < max_iters and (spent < min_s or not rates):
        t0 = time.perf_counter()
        for x in inputs:
            model.probabilities(x)
        dt = time.perf_counter() - t0
        rates.append(pixels / 128**2 / dt)
        spent += dt
    return float(np.median(rates))
