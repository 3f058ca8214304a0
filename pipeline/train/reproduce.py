"""Reproduce the method's comparison: U-Net, Clay-only and hybrid, three seeds each, vs the paper.

Full run (the full L4S dataset with test masks, a GPU, the Clay v1.5 checkpoint)::

    python -m pipeline.train.reproduce --data DATA --clay-checkpoint clay-v1.5.ckpt --out out/reproduce

writes ``OUT/<model>/seed_<s>/model.safetensors``, ``OUT/<model>/summary.{json,md}`` and
``OUT/comparison.{json,md}`` (test F1 mean +/- std next to the published numbers). It uses the
method's bands: all 14 L4S channels (``--bands`` for the 13 sweep bands). ``--resume`` continues a
killed run.

``--smoke`` runs the same code path in about a minute on CPU on the 15-chip sample: 2 epochs
(stage 1 = 1 epoch, so LoRA stage 2 runs too), a U-Net of widths 4-32, and a *tiny Clay with random
weights* unless a Clay checkpoint is given. Its numbers say nothing about the method and are
labelled so.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.bands import L4S_BANDS
from pipeline.errors import UserError
from pipeline.train.config import TrainConfig
from pipeline.train.data import shared_sample_dir
from pipeline.train.experiment import markdown_table, prepare_data, run_experiment

MODELS = ("unet", "clay", "hybrid")
SAMPLE_DIR = shared_sample_dir()

#: Test F1 (percent) published for the method (DOMAIN.md, arXiv 2606.14081): (mean, std or None).
PUBLISHED_TEST_F1: dict[str, tuple[float, float | None]] = {
    "hybrid": (64.5, 1.8),
    "unet": (59.9, None),
    "clay": (55.2, 3.6),
}


def model_configs(bands: tuple[str, ...], smoke: bool) -> dict[str, dict[str, Any]]:
    """Registry configs per model: the paper's, or tiny ones for ``smoke``."""
    from pipeline.models.registry import default_config

    configs = {name: default_config(name, bands) for name in MODELS}
    if smoke:
        configs["unet"]["widths"] = [4, 8, 16, 32]
        configs["hybrid"] |= {"widths": [4, 8, 16, 32], "clay": {"size": "tiny"}, "context_channels": 16}
        configs["clay"] |= {"clay": {"size": "tiny"}, "token_channels": 16, "decoder_widths": [16, 8, 8]}
    return configs


def comparison(results: dict[str, dict[str, Any]], smoke: bool) -> tuple[dict[str, Any], str]:
    """The comparison with the published numbers, as JSON and Markdown."""
    rows = {}
    for name in MODELS:
        if name not in results:
            continue
        ours = results[name]["table"].get("test F1 (locked)")
        pub_mean, pub_std = PUBLISHED_TEST_F1[name]
        rows[name] = {
            "published_test_f1": pub_mean, "published_std": pub_std,
            "test_f1": None if ours is None else 100 * ours["mean"],
            "test_f1_std": None if ours is None else 100 * ours["std"],
            "seeds": results[name]["seeds"],
        }
    label = ("SMOKE RUN: tiny models, 2 epochs, 15-chip sample"
             + (", Clay with RANDOM weights" if smoke else "") + ". Not comparable to the paper.\n\n"
             if smoke else "")
    lines = [f"# Reproduction of arXiv 2606.14081 on Landslide4Sense\n\n{label}",
             "| model | test F1 (ours, %) | test F1 (published, %) |", "|---|---|---|"]
    for name, row in rows.items():
        ours_txt = "-" if row["test_f1"] is None else f"{row['test_f1']:.1f} +/- {row['test_f1_std']:.1f}"
        pub_txt = f"{row['published_test_f1']:.1f}" + (
            f" +/- {row['published_std']:.1f}" if row["published_std"] is not None else "")
        lines.append(f"| {name} | {ours_txt} | {pub_txt} |")
    detail = markdown_table({name: results[name]["table"] for name in rows})
    return {"smoke": smoke, "rows": rows}, "\n".join(lines) + "\n\n## All metrics\n\n" + detail


def main(argv: list[str] | None = None) -> int:
    """Run the reproduction; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.train.reproduce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="L4S directory (default with --smoke: the 15-chip sample)")
    parser.add_argument("--clay-checkpoint", type=Path,
                        help="Clay v1.5 checkpoint (required without --smoke)")
    parser.add_argument("--out", type=Path, default=Path("out/reproduce"))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 123, 2024])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--bands", nargs="+", default=list(L4S_BANDS))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run on the sample (CI)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(args, argv)
    except UserError as exc:
        print(f"reproduce: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    if not args.smoke and args.clay_checkpoint is None:
        raise UserError("--clay-checkpoint is required (Clay v1.5, made-with-clay/Clay v1.5/clay-v1.5.ckpt); "
                        "use --smoke for a CPU check with random tiny Clay weights")
    data_dir = args.data or (SAMPLE_DIR if args.smoke else None)
    if data_dir is None:
        raise UserError("--data is required (get the data with `landslide data download --dest DIR`)")
    bands = tuple(args.bands)
    base = TrainConfig(model="unet", model_config={}, epochs=args.epochs, progress=not args.smoke,
                       clay_checkpoint=str(args.clay_checkpoint) if args.clay_checkpoint else None)
    if args.smoke:
        base = replace(base, epochs=2, stage1_epochs=1, lr=3e-3, stage2_lr=1e-3, lora_lr=1e-3, amp=False)
    configs = model_configs(bands, args.smoke)
    data = prepare_data(data_dir, bands)
    command = "python -m pipeline.train.reproduce " + shlex.join(argv if argv is not None else sys.argv[1:])
    results = {}
    for name in args.models:
        config = replace(base, model=name, model_config=configs[name],
                         clay_checkpoint=base.clay_checkpoint if name != "unet" else None)
        results[name] = run_experiment(config, data, args.seeds, args.out / name, resume=args.resume,
                                       command=command)
    table_json, table_md = comparison(results, args.smoke)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.json").write_text(json.dumps(table_json, indent=2, sort_keys=True))
    (args.out / "comparison.md").write_text(table_md)
    print(table_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
