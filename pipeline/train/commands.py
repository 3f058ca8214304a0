"""``landslide train``, ``landslide evaluate`` and ``landslide data download``."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from pipeline.bands import L4S_BANDS, SWEEP_BANDS
from pipeline.errors import UserError

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the training, evaluation and data subcommands to the ``landslide`` parser."""
    train = subparsers.add_parser(
        "train", help="train a model on Landslide4Sense over several seeds (the method's protocol)",
        description="Train on L4S: checkpoint by validation F1 at 0.70, threshold swept on validation "
        "(0.55-0.85) and locked, test scored once. Writes OUT/seed_<s>/model.safetensors and "
        "OUT/summary.{json,md}. Probabilities of these checkpoints are uncalibrated (identity); "
        "the shipped model's recipe, with cross-validated calibration, is python -m pipeline.train.ship.",
    )
    train.add_argument("--data", type=Path, required=True,
                       help="L4S directory (official, mirror or flat layout)")
    train.add_argument("--model", choices=("unet", "clay", "hybrid"), required=True,
                       help="registry model: unet (baseline), clay (Clay encoder + terrain fusion), "
                       "hybrid (U-Net + Clay context, the method's best)")
    train.add_argument("--clay-checkpoint", type=Path,
                       help="Clay v1.5 checkpoint (clay-v1.5.ckpt); without it Clay starts from "
                       "random weights")
    train.add_argument("--seeds", type=int, nargs="+", default=[42, 123, 2024],
                       help="one run per seed (default: %(default)s)")
    train.add_argument("--epochs", type=int, default=50, help="maximum epochs (default: %(default)s)")
    train.add_argument("--stage1-epochs", type=int, default=10,
                       help="Clay-frozen epochs before LoRA (clay, hybrid; default: %(default)s)")
    train.add_argument("--patience", type=int, default=10,
                       help="epochs without validation improvement before stopping; restarts at stage 2 "
                       "(default: %(default)s)")
    train.add_argument("--batch-size", type=int, default=8, help="chips per step (default: %(default)s)")
    train.add_argument("--widths", type=int, nargs="+", help="U-Net widths (default 64 128 256 512)")
    train.add_argument("--bands", nargs="+", default=list(SWEEP_BANDS),
                       help="input channels by name (default: the 13 sweep bands, no B10); "
                       f"from {' '.join(L4S_BANDS)}")
    train.add_argument("--split-ids", type=Path, help="JSON {train: [...], validation: [...], test: [...]} "
                       "of chip ids, for a flat pool (default: seeded 60/20/20 split)")
    train.add_argument("--out", type=Path, required=True, help="run directory (one seed_<s>/ per seed)")
    train.add_argument("--resume", action="store_true", help="continue a killed run in OUT")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a checkpoint on an L4S split (threshold metrics and calibration)",
        description="Score a checkpoint's calibrated probabilities over all pixels of one L4S split: "
        "precision, recall, F1 and IoU at its stored threshold (and at 0.5), expected calibration error "
        "(10 equal-width bins), Brier score and Brier skill over the base rate. With --json, also "
        "writes a reliability diagram PNG beside the JSON.",
    )
    evaluate.add_argument("--data", type=Path, required=True, help="L4S directory (official, mirror or flat)")
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"),
                          help="split to score (default: %(default)s; for a flat pool, the split recorded "
                          "in the checkpoint)")
    evaluate.add_argument("--checkpoint", type=Path, help="checkpoint to score (default: the shipped one)")
    evaluate.add_argument("--json", type=Path,
                          help="write the metrics to this JSON file and the reliability diagram to "
                          "JSON-stem.reliability.png beside it")
    evaluate.set_defaults(func=run_evaluate)

    data = subparsers.add_parser("data", help="Landslide4Sense data",
                                 description="Get the Landslide4Sense benchmark for training and evaluation.")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    download = data_sub.add_parser(
        "download", help="download the full L4S dataset (with test masks)",
        description="Download Landslide4Sense (train, validation and test with masks) from its Hugging "
        "Face mirror into DEST, then verify the files' checksums.",
    )
    download.add_argument("--dest", type=Path, required=True, help="directory to download into")
    download.add_argument("--no-verify", action="store_true", help="skip the checksum pass")
    download.set_defaults(func=run_download)


def model_config(name: str, bands: tuple[str, ...], widths: list[int] | None) -> dict[str, Any]:
    """The registry's default configuration for ``name`` and ``bands``, with ``widths`` if given.

    Raises:
        UserError: If ``widths`` is given for a model without U-Net widths.
    """
    from pipeline.models.registry import default_config

    config = default_config(name, bands)
    if widths is not None:
        key = next((k for k in ("widths", "unet_widths") if k in config), None)
        if key is None:
            raise UserError(f"--widths does not apply to model {name!r}")
        config[key] = list(widths)
    return config


def _read_split_ids(path: Path | None) -> dict[str, list[int]] | None:
    if path is None:
        return None
    try:
        raw = json.loads(path.read_text())
        return {k: [int(i) for i in raw[k]] for k in ("train", "validation", "test") if k in raw}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a JSON object of chip id lists ({exc})") from exc


def run_train(args: argparse.Namespace) -> int:
    """``landslide train``."""
    from pipeline.train.config import TrainConfig
    from pipeline.train.experiment import prepare_data, run_experiment

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bands = tuple(args.bands)
    unknown = [b for b in bands if b not in L4S_BANDS]
    if unknown:
        raise UserError(f"unknown bands {unknown}; choose from {' '.join(L4S_BANDS)}")
    if args.clay_checkpoint is not None and not args.clay_checkpoint.is_file():
        raise UserError(f"Clay checkpoint {args.clay_checkpoint} does not exist")
    if args.model != "unet" and args.clay_checkpoint is None:
        log.warning("no --clay-checkpoint: Clay starts from RANDOM weights (not the method)")
    config = TrainConfig(
        model=args.model, model_config=model_config(args.model, bands, args.widths), epochs=args.epochs,
        batch_size=args.batch_size, stage1_epochs=args.stage1_epochs, patience=args.patience,
        clay_checkpoint=str(args.clay_checkpoint) if args.clay_checkpoint else None,
        progress=not args.no_progress,
    )
    data = prepare_data(args.data, bands, _read_split_ids(args.split_ids))
    summary = run_experiment(config, data, args.seeds, args.out, resume=args.resume,
                             command="landslide " + shlex.join(sys.argv[1:]))
    print((args.out / "summary.md").read_text())
    log.info("checkpoints: %s", ", ".join(s["checkpoint"] for s in summary["per_seed"]))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``landslide evaluate``."""
    from pipeline.models.checkpoint import shipped_checkpoint
    from pipeline.train.evaluate import evaluate_checkpoint

    checkpoint = args.checkpoint or shipped_checkpoint()
    png = None if args.json is None else args.json.with_name(args.json.stem + ".reliability.png")
    result = evaluate_checkpoint(checkpoint, args.data, args.split, reliability_png=png)
    print(f"{result['split']} ({result['n_chips']} chips, {result['data_layout']} layout) at threshold "
          f"{result['threshold']:.2f}: precision {result['precision']:.4f} recall {result['recall']:.4f} "
          f"F1 {result['f1']:.4f} IoU {result['iou']:.4f} (F1 at 0.5: {result['at_0.5']['f1']:.4f}); "
          f"ECE {result['ece']:.4f} Brier {result['brier']:.4f} Brier skill {result['brier_skill']:.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True))
    return 0


def run_download(args: argparse.Namespace) -> int:
    """``landslide data download``."""
    from pipeline.train.download import download

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = download(args.dest, verify=not args.no_verify)
    print(f"Landslide4Sense in {args.dest}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
