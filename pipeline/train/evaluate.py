"""Score a project checkpoint on one split of an L4S dataset, at its locked threshold and at 0.5."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.errors import UserError
from pipeline.models.checkpoint import CheckpointError, load_checkpoint, sha256_file
from pipeline.train.data import BandStatistics, ChipSet, detect_layout
from pipeline.train.loop import evaluate_counts


def evaluate_checkpoint(
    checkpoint: str | Path, data_dir: str | Path, split: str = "test", batch_size: int = 8,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Metrics of the landslide class over all pixels of ``split``.

    For a flat pool the split recorded in the checkpoint (``training.split_ids``) is used, so
    "test" means the chips that were held out when it was trained.

    Returns:
        ``threshold``, ``precision``, ``recall``, ``f1``, ``iou`` (at the checkpoint's threshold),
        the counts, ``at_0.5`` and provenance (checkpoint, sha256, split, chips, layout).

    Raises:
        UserError: For an unusable checkpoint, missing data or split, or a bad chip file.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, meta = load_checkpoint(checkpoint, device=str(device))
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    recorded = meta.training.get("split_ids") if meta.training.get("data_layout") == "flat" else None
    layout = detect_layout(data_dir, recorded)
    chips = layout.chips(split)
    if any(c.mask is None for c in chips):
        raise UserError(f"{data_dir}: the {split} split has images without masks; cannot score it")
    stats = BandStatistics(meta.bands, meta.norm_mean, meta.norm_std)
    dataset = ChipSet(chips, meta.bands, stats)
    thresholds = tuple(sorted({meta.threshold, 0.5}))
    counts = evaluate_counts(model, dataset, thresholds, batch_size, device)
    locked = counts.at(meta.threshold).as_dict()
    return locked | {
        "at_0.5": counts.at(0.5).as_dict(), "split": split, "n_chips": len(chips),
        "chip_ids": [c.chip_id for c in chips], "data_layout": layout.kind, "model": meta.model,
        "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
    }
