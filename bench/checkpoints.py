"""Checkpoints with seeded random weights for throughput measurements (never for results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.bands import SWEEP_BANDS
from pipeline.models.checkpoint import CheckpointMeta, save_checkpoint
from pipeline.models.registry import build_model, default_config

#: Models the bench measures, in the order the method presents them.
BENCH_MODELS = ("unet", "hybrid", "clay")


def bench_config(name: str, quick: bool) -> dict[str, Any]:
    """Paper configuration of ``name`` (U-Net 64-512, Clay v1.5 large), or a tiny one for ``quick``."""
    config = default_config(name)
    if not quick:
        return config
    if name == "unet":
        return {**config, "widths": [8, 16, 32, 64]}
    config["clay"] = {"size": "tiny"}
    if name == "hybrid":
        config["widths"] = [8, 16, 32, 64]
        config["context_channels"] = 64
    return config


def random_checkpoint(name: str, config: dict[str, Any], path: Path, seed: int = 0) -> Path:
    """Write a checkpoint of ``name`` with seeded random weights to ``path``.

    The metadata says, in ``training.note``, that the weights are random: a benchmark
    checkpoint measures speed only.
    """
    torch.manual_seed(seed)
    model = build_model(name, config).eval()
    meta = CheckpointMeta(
        model=name,
        config=config,
        bands=SWEEP_BANDS,
        norm_mean=tuple([1.0] * len(SWEEP_BANDS)),
        norm_std=tuple([0.5] * len(SWEEP_BANDS)),
        threshold=0.5,
        training={"note": "random weights for throughput benchmarks; not a trained model"},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model.state_dict(), meta)
    del model
    return path
