"""Train the shipped checkpoint: a narrow U-Net on SWEEP_BANDS from the 15 L4S sample chips.

``python -m pipeline.train.ship`` reproduces ``pipeline/demo/data/unet-l4s-sample.safetensors``
on CPU. The 15 chips are split by landslide pixel count (stratified, fixed and documented in
:data:`SHIP_SPLIT`): sorted by count, in groups of five the 2nd chip goes to validation, the 4th
to the held-out set and the rest to training (9 / 3 / 3). Threshold and checkpoint are chosen on
validation only; the held-out chips are scored once at the end, next to a rule baseline
(NDVI < a and slope > b, both grid-searched on the training chips).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.bands import SWEEP_BANDS
from pipeline.models.checkpoint import shipped_checkpoint
from pipeline.train.data import shared_sample_dir
from pipeline.train.experiment import prepare_data, run_seed
from pipeline.train.loop import TrainConfig
from pipeline.train.rule import fit_rule, score_rule

SAMPLE_DIR = shared_sample_dir()

#: Chip ids per split. Pixel counts: 3:0 45:0 72:34 525:39 800:107 40:151 16:186 253:264
#: 600:272 38:297 1:405 28:951 300:969 41:1074 512:4837.
SHIP_SPLIT: dict[str, list[int]] = {
    "train": [1, 3, 38, 40, 72, 253, 300, 512, 800],
    "validation": [16, 28, 45],
    "test": [41, 525, 600],
}

SHIP_WIDTHS = (16, 32, 64, 128)


def ship_config(epochs: int, seed: int) -> TrainConfig:
    """The shipped model's training settings."""
    return TrainConfig(
        model="unet",
        model_config={"in_channels": len(SWEEP_BANDS), "widths": list(SHIP_WIDTHS), "dropout": 0.1},
        seed=seed, epochs=epochs, batch_size=8, lr=1e-3, patience=epochs, repeats=8,
        intensity_jitter=0.05, progress=False,
    )


def main(argv: list[str] | None = None) -> int:
    """Train, measure against the rule, write the checkpoint and its report."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train.ship", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("build/ship"), help="run directory (state, logs)")
    parser.add_argument("--dest", type=Path, default=shipped_checkpoint())
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    command = "python -m pipeline.train.ship " + shlex.join(argv if argv is not None else sys.argv[1:])

    started = time.monotonic()
    data = prepare_data(args.data, SWEEP_BANDS, SHIP_SPLIT)
    config = ship_config(args.epochs, args.seed)
    summary = run_seed(config, data, args.out, resume=args.resume, command=command.strip())
    rule, rule_train = fit_rule(data.layout.chips("train"))
    rule_test = score_rule(rule, data.layout.chips("test"))
    report: dict[str, Any] = {
        "command": command.strip(), "split": SHIP_SPLIT, "widths": list(SHIP_WIDTHS),
        "train_config": json.loads(config.fingerprint()),
        "minutes": round((time.monotonic() - started) / 60, 2),
        "model": summary, "rule": {"ndvi_max": rule.ndvi_max, "slope_min_deg": rule.slope_min,
                                   "train": rule_train.as_dict(), "held_out": rule_test.as_dict()},
    }
    _write_shipped(Path(summary["checkpoint"]), args.dest, report)
    model_f1 = summary["test"]["locked"]["f1"]
    print(f"held-out F1: model {model_f1:.4f} at {summary['threshold']:.2f}, rule {rule_test.f1:.4f}")
    return 0 if model_f1 > rule_test.f1 else 1


def _write_shipped(run_checkpoint: Path, dest: Path, report: dict[str, Any]) -> None:
    """Copy the run's checkpoint to ``dest`` with the rule comparison added to its metadata."""
    from pipeline.models.checkpoint import read_meta, read_state_dict, save_checkpoint

    meta = read_meta(run_checkpoint)
    training = dict(meta.training) | {"ship_report": {k: v for k, v in report.items() if k != "model"}}
    from dataclasses import replace

    sha = save_checkpoint(dest, read_state_dict(run_checkpoint), replace(meta, training=training))
    report["sha256"] = sha
    report["size_bytes"] = dest.stat().st_size
    dest.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
