"""Build the shipped checkpoint: 5-fold CV on the 15 L4S sample chips, then one model on all 15.

``python -m pipeline.train.ship`` rebuilds ``pipeline/demo/data/unet-l4s-sample.safetensors``
on CPU (recipe :data:`~pipeline.train.cv.SHIPPED_RECIPE`, the defaults of its options):

1. nested 5-fold cross-validation (:func:`pipeline.train.cv.run_cv`, 15 trainings): out-of-fold
   (OOF) logits of every chip from a model that never saw it, scored with a calibration map and
   threshold chosen inside each fold (:mod:`pipeline.train.nested`), and the NDVI + slope rule
   tuned on each fold's training chips;
2. the shipped calibration (temperature, Platt, beta or isotonic: the lowest nested ECE +
   largest gap, :func:`pipeline.train.nested.shipped`) fitted on the OOF logits, and the
   decision threshold that maximises OOF F1 of the calibrated probabilities;
3. the final model trained with the same recipe on all 15 chips (statistics from all 15), saved
   with that calibration and threshold in its metadata, plus the CV report
   (``unet-l4s-sample.json``), the OOF logits beside it (``unet-l4s-sample.oof.npz``, outer and
   inner, from which ``python -m pipeline.figures`` redraws the diagram) and the reliability
   diagram (``docs/img/reliability.png``: the nested OOF curve, each fold calibrated by a map it
   did not contribute to; its PNG text names the checkpoint's SHA-256 and this command).

``--swa-epochs N`` (and ``--swa-lr``) ships the weights averaged over the last ``N`` epochs, with
their BatchNorm statistics recomputed (:attr:`TrainConfig.swa_epochs
<pipeline.train.config.TrainConfig>`): one network, the same FLOPs.
``--smoke`` runs everything with 1 epoch and tiny widths into ``--out`` (for CI); ``--cv-only``
stops after step 2. ``--resume`` reuses the trainings already in ``--out`` (e.g. a finished
``python -m pipeline.train.search`` variant directory), so only what is missing is trained.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from pipeline import __version__
from pipeline.bands import SWEEP_BANDS
from pipeline.figures import FigureSource, stamp_png
from pipeline.models.checkpoint import Calibration, CheckpointMeta, save_checkpoint, shipped_checkpoint
from pipeline.train.cv import SHIPPED_RECIPE, Recipe, run_cv
from pipeline.train.data import ChipSet, band_statistics, detect_layout, shared_sample_dir
from pipeline.train.loop import fit
from pipeline.train.shipped_oof import reliability_figure, write_shipped_oof

SAMPLE_DIR = shared_sample_dir()
RELIABILITY_PNG = Path(__file__).resolve().parents[2] / "docs" / "img" / "reliability.png"


def _parser() -> argparse.ArgumentParser:
    defaults = SHIPPED_RECIPE
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train.ship", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, default=SAMPLE_DIR, help="flat pool of L4S chips (img/, mask/)")
    parser.add_argument(
        "--out", type=Path, default=Path("build/ship"), help="run directory (folds, OOF, logs)"
    )
    parser.add_argument("--dest", type=Path, default=shipped_checkpoint(), help="checkpoint to write")
    parser.add_argument("--png", type=Path, default=RELIABILITY_PNG, help="reliability diagram to write")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--widths", type=int, nargs="+", default=list(defaults.widths))
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--crop", type=int, default=defaults.crop)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine 2 threads ran 3x slower)",
    )
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--pos-weight", type=float, default=defaults.pos_weight)
    parser.add_argument("--lovasz-weight", type=float, default=defaults.lovasz_weight)
    parser.add_argument("--radiometric", type=float, default=defaults.radiometric)
    parser.add_argument("--jitter", type=float, default=defaults.intensity_jitter)
    parser.add_argument("--swa-epochs", type=int, default=defaults.swa_epochs,
                        help="average the weights of the last N epochs into the model (SWA; 0: off)")
    parser.add_argument("--swa-lr", type=float, default=defaults.swa_lr,
                        help="constant learning rate inside the SWA window (default: keep the cosine)")
    parser.add_argument("--terrain", choices=("sweep", "l4s"), default=defaults.terrain)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--held-terrain", choices=("sweep", "l4s"),
                        help="slope fed to the held chips (default: --terrain), for the terrain ablation")
    parser.add_argument("--cv-only", action="store_true", help="cross-validate only (no final model)")
    parser.add_argument("--folds", type=int, default=5, help="number of outer folds (default 5)")
    parser.add_argument("--smoke", action="store_true", help="1 epoch, tiny widths, 1 repeat (CI)")
    parser.add_argument("--resume", action="store_true", help="continue killed fold/final runs in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Cross-validate, calibrate, train the final model and write checkpoint, report and figure."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = "python -m pipeline.train.ship " + shlex.join(argv if argv is not None else sys.argv[1:])
    torch.set_num_threads(args.threads)
    recipe = recipe_from_args(args)
    started = time.monotonic()
    cv = run_cv(recipe, args.data, args.out, k=args.folds, resume=args.resume, held_terrain=args.held_terrain)
    print(_cv_line(cv))
    if args.cv_only:
        return 0
    calibration = Calibration(**cv["calibration"])
    dest = (
        args.dest if not args.smoke or args.dest != shipped_checkpoint() else args.out / "smoke.safetensors"
    )
    png = args.png if not args.smoke or args.png != RELIABILITY_PNG else args.out / "reliability.png"
    report: dict[str, Any] = {"command": command.strip(), "cv": cv, "software_version": __version__}
    sha = train_final(
        recipe, args.data, args.out / "final", dest, calibration, cv["threshold"], report, resume=args.resume
    )
    # the OOF logits stay beside the checkpoint, so `python -m pipeline.figures` can redraw this
    write_shipped_oof(args.out / "oof.npz", dest)
    stamp_png(reliability_figure(dest, png), FigureSource.of(dest, command.strip()))
    report |= {
        "sha256": sha,
        "size_bytes": dest.stat().st_size,
        "minutes": round((time.monotonic() - started) / 60, 2),
    }
    dest.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True))
    print(f"wrote {dest} ({report['minutes']} min)")
    return 0


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The :class:`Recipe` of parsed command-line ``args`` (``--smoke``: 1 epoch, tiny widths)."""
    recipe = Recipe(
        widths=tuple(args.widths),
        epochs=args.epochs,
        repeats=args.repeats,
        crop=args.crop,
        lr=args.lr,
        pos_weight=args.pos_weight,
        lovasz_weight=args.lovasz_weight,
        intensity_jitter=args.jitter,
        radiometric=args.radiometric,
        terrain=args.terrain,
        seed=args.seed,
        swa_epochs=args.swa_epochs,
        swa_lr=args.swa_lr,
    )
    if args.smoke:
        recipe = replace(
            recipe, widths=(4, 8, 16, 32), epochs=1, repeats=1, swa_epochs=min(recipe.swa_epochs, 1)
        )
    return recipe


def _cv_line(cv: dict[str, Any]) -> str:
    model, rule = cv["nested"], cv["rule"]
    return (
        f"nested OOF F1 {model['f1']:.3f} (P {model['precision']:.3f} R {model['recall']:.3f} "
        f"IoU {model['iou']:.3f}; thresholds {model['fold_thresholds']}); rule F1 {rule['f1']:.3f}; "
        f"ECE raw {cv['raw']['ece']:.3f} -> nested {model['ece']:.3f} (max gap {model['max_gap']:.3f}); "
        f"Brier skill {model['brier_skill']:.3f}; L2A-shifted F1 {cv['l2a_shifted']['f1']:.3f}; "
        f"shipped {cv['chosen_method']} at {cv['threshold']:.2f}; {cv['minutes']} min"
    )


def train_final(
    recipe: Recipe,
    data_dir: Path,
    run_dir: Path,
    dest: Path,
    calibration: Calibration,
    threshold: float,
    report: dict[str, Any],
    resume: bool = False,
) -> str:
    """Train ``recipe`` on every chip of ``data_dir`` and save it with ``calibration`` and ``threshold``.

    Returns:
        The checkpoint's SHA-256.
    """
    bands = tuple(SWEEP_BANDS)
    layout = detect_layout(data_dir, None)
    chips = sorted((c for cs in layout.splits.values() for c in cs), key=lambda c: c.chip_id)
    stats = band_statistics(chips, bands, recipe.terrain)
    config = recipe.train_config(bands)
    result = fit(
        config,
        ChipSet(chips, bands, stats, recipe.terrain),
        None,
        run_dir,
        resume=resume,
        device=torch.device("cpu"),
    )
    cv = report["cv"]
    training = {
        "command": report["command"],
        "data_layout": "flat",
        "data_root": str(data_dir),
        "split_ids": {"train": [c.chip_id for c in chips]},
        "terrain": recipe.terrain,
        "train_config": json.loads(config.fingerprint()),
        "recipe": asdict(recipe),
        "history": result.history,
        "cv": {
            k: cv[k]
            for k in (
                "folds",
                "threshold",
                "chosen_method",
                "criterion",
                "raw",
                "nested",
                "methods",
                "tta",
                "ensemble",
                "cross_fitted",
                "in_sample",
                "l2a_shifted",
                "rule",
            )
        },
    }
    meta = CheckpointMeta(
        model="unet",
        config=dict(config.model_config),
        bands=bands,
        norm_mean=stats.mean,
        norm_std=stats.std,
        threshold=threshold,
        calibration=calibration,
        training=training,
        software_version=__version__,
    )
    return save_checkpoint(dest, result.model.state_dict(), meta)


if __name__ == "__main__":
    sys.exit(main())
