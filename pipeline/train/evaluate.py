"""Score a project checkpoint on one split of an L4S dataset: threshold metrics and calibration.

Probabilities are the checkpoint's *calibrated* probabilities (its stored calibration applied to
the logits; identity for old checkpoints), as a sweep writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import UserError
from pipeline.models.checkpoint import CheckpointError, load_checkpoint, sha256_file
from pipeline.train.data import BandStatistics, ChipSet, detect_layout
from pipeline.train.loop import logit_batches
from pipeline.train.metrics import ConfusionAccumulator


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 8,
    device: torch.device | None = None,
    reliability_png: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of the landslide class over all pixels of ``split``.

    For a flat pool the split recorded in the checkpoint (``training.split_ids``) is used, so
    "test" means the chips that were held out when it was trained (a checkpoint trained on the
    whole pool records no test split: score another pool).

    Args:
        checkpoint: Project checkpoint.
        data_dir: L4S directory.
        split: Split to score.
        batch_size: Chips per forward pass.
        device: Torch device (default CUDA if available).
        reliability_png: Where to draw the reliability diagram (None: no figure).

    Returns:
        ``threshold``, ``precision``, ``recall``, ``f1``, ``iou`` (at the checkpoint's threshold),
        the counts, ``at_0.5``, ``ece`` (10 equal-width bins), ``brier``, ``brier_skill``
        (``1 - brier / brier of the base rate``), ``base_rate``, ``calibration`` and provenance.

    Raises:
        UserError: For an unusable checkpoint, missing data or split, or a bad chip file.
    """
    from pipeline.train import calibration as cal

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
    dataset = ChipSet(chips, meta.bands, stats, str(meta.training.get("terrain", "l4s")))
    calibration = meta.calibration_or_identity
    thresholds = tuple(sorted({meta.threshold, 0.5}))
    counts = ConfusionAccumulator(thresholds)
    probs, labels = [], []
    for logits, mask in logit_batches(model, dataset, batch_size, device):
        prob = calibration.probabilities(logits)
        counts.update(prob, mask)
        probs.append(prob.numpy().astype(np.float32))
        labels.append(mask.numpy().astype(np.uint8))
    p, y = np.concatenate(probs), np.concatenate(labels)
    result: dict[str, Any] = (
        counts.at(meta.threshold).as_dict()
        | cal.summary(p, y)
        | {
            "at_0.5": counts.at(0.5).as_dict(),
            "split": split,
            "n_chips": len(chips),
            "chip_ids": [c.chip_id for c in chips],
            "data_layout": layout.kind,
            "model": meta.model,
            "calibration": None
            if meta.calibration is None
            else {
                "method": meta.calibration.method,
                "scale": meta.calibration.scale,
                "bias": meta.calibration.bias,
            },
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha256_file(checkpoint),
        }
    )
    if reliability_png is not None:
        cal.reliability_png(
            reliability_png,
            {f"{split} ({len(chips)} chips)": (p, y)},
            f"Reliability: {Path(checkpoint).name}",
            meta.threshold,
        )
        result["reliability_png"] = str(reliability_png)
    return result
