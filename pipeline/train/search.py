"""A small recipe search under the nested protocol: one factor at a time from the shipped recipe.

``python -m pipeline.train.search --out build/search`` runs every variant of :data:`VARIANTS`
as one nested 5-fold run (:func:`pipeline.train.cv.run_cv`, 15 trainings each) into
``OUT/<variant>/`` and writes ``OUT/search.md`` and ``OUT/search.json``: per variant the nested
out-of-fold F1, IoU, ECE, largest calibration gap and Brier skill; the same with test-time
augmentation (8 flips and turns, 8x the FLOPs); a 5-model ensemble proxy (5x the FLOPs,
selection cross-fitted); the held chips shifted the L2A way; and the F1 difference to the
baseline with its fold noise (standard error of the 5 paired per-fold differences).

A variant whose ``OUT/<variant>/cv.json`` exists is read, not rerun (``--rerun`` forces it);
a killed variant continues where it stopped. ``--variants`` runs a subset; ``--smoke`` runs
1-epoch tiny models (CI plumbing only). ``--screen`` trains only the 5 outer models of each
variant but the baseline (a third of the cost; each fold's map and threshold then come from the
other folds' outer logits: cross-fitted, not nested). The F1 difference to the baseline is
always taken between cross-fitted rows, like with like.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.train.cv import SHIPPED_RECIPE, Recipe, run_cv
from pipeline.train.data import shared_sample_dir

#: Variants: name -> changes to :class:`~pipeline.train.cv.Recipe` (one factor at a time).
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "epochs-40": {"epochs": 40},
    "widths-16-128": {"widths": (16, 32, 64, 128)},
    "lr-3e-3": {"lr": 3e-3},
    "lr-3e-4": {"lr": 3e-4},
    "lovasz-0.5": {"lovasz_weight": 0.5},
    "pos-weight-5": {"pos_weight": 5.0},
    "jitter-0.15": {"intensity_jitter": 0.15},
}
#: The second round: one factor at a time from the first round's winner (the shipped recipe).
SHIPPED_VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "jitter-0.3": {"intensity_jitter": 0.3},
    "lr-3e-3": {"lr": 3e-3},
    "epochs-40": {"epochs": 40},
    "widths-16-128": {"widths": (16, 32, 64, 128)},
    # weight averaging over the last quarter (5 of 20 epochs): cosine kept, and the paper's
    # constant SWA learning rate (cosine 1e-3 -> 3e-4 over 15 epochs, then 3e-4)
    "swa": {"swa_epochs": 5},
    "swa-const": {"swa_epochs": 5, "swa_lr": 3e-4},
}
#: Where each round starts (``--start``): its base recipe and its variants (the base: no changes).
ROUNDS: dict[str, tuple[Recipe, dict[str, dict[str, Any]]]] = {
    "first": (Recipe(), VARIANTS),
    "shipped": (SHIPPED_RECIPE, SHIPPED_VARIANTS),
}

log = logging.getLogger(__name__)


def _row(
    name: str, changes: dict[str, Any], cv: dict[str, Any], base: dict[str, Any] | None
) -> dict[str, Any]:
    from pipeline.models.flops import measure

    recipe = Recipe(**(cv["recipe"] | {"widths": tuple(cv["recipe"]["widths"])}))
    gflop = measure("unet", recipe.train_config().model_config).gflop_per_chip
    n = cv["nested"]
    keys = ("f1", "iou", "ece", "max_gap", "brier_skill")
    row = {
        "variant": name,
        "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
        "gflop_per_chip": round(gflop, 3),
        "f1": n["f1"], "iou": n["iou"], "precision": n["precision"], "recall": n["recall"],
        "ece": n["ece"], "max_gap": n["max_gap"], "brier_skill": n["brier_skill"],
        "methods": n["fold_methods"], "thresholds": n["fold_thresholds"], "fold_f1": n["fold_f1"],
        "protocol": cv.get("protocol", "nested"),
        "cross_fitted": {k: cv["cross_fitted"][k] for k in keys},
        "tta": {k: cv["tta"][k] for k in keys},
        "ensemble": {k: cv["ensemble"][k] for k in keys} if "ensemble" in cv else None,
        "l2a_f1": cv["l2a_shifted"]["f1"],
        "rule_f1": cv["rule"]["f1"],
        "minutes": cv["minutes"],
        "trainings": cv.get("trainings", 0),
    }  # fmt: skip
    if base is not None:  # like with like: cross-fitted selection exists for both protocols
        mine, theirs = cv["cross_fitted"], base["cross_fitted"]
        diff = np.asarray(mine["fold_f1"]) - np.asarray(theirs["fold_f1"])
        row["delta_f1"] = mine["f1"] - theirs["f1"]
        row["delta_se"] = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else 0.0
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The search table (Markdown); rows screened on the outer models only say so."""
    head = (
        "| variant | protocol | GFLOP/chip | F1 | IoU | ECE | max gap | Brier skill | cross-fitted F1 "
        "| dF1 vs baseline (+/- fold SE) | TTA F1 / ECE | ensemble F1 / ECE | L2A F1 | trainings |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        delta = f"{r['delta_f1']:+.3f} +/- {r['delta_se']:.3f}" if "delta_f1" in r else "-"
        ens = r["ensemble"]
        ens_cell = f"{ens['f1']:.3f} / {ens['ece']:.3f}" if ens else "-"
        lines.append(
            f"| {r['variant']} | {r['protocol']} | {r['gflop_per_chip']:.2f} | {r['f1']:.3f} "
            f"| {r['iou']:.3f} "
            f"| {r['ece']:.3f} | {r['max_gap']:.3f} | {r['brier_skill']:.2f} | {r['cross_fitted']['f1']:.3f} "
            f"| {delta} | {r['tta']['f1']:.3f} / {r['tta']['ece']:.3f} | {ens_cell} | {r['l2a_f1']:.3f} "
            f"| {r['trainings']} |"
        )
    return head + "\n".join(lines) + "\n"


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run (or read) each variant's nested CV and write the table."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train.search", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, default=shared_sample_dir(), help="flat pool of L4S chips")
    parser.add_argument("--out", type=Path, default=Path("build/search"), help="one directory per variant")
    parser.add_argument(
        "--start", choices=list(ROUNDS), default="first",
        help="first: from the first guesses (VARIANTS); shipped: from the shipped recipe (SHIPPED_VARIANTS)",
    )  # fmt: skip
    parser.add_argument("--variants", nargs="+", help="run only these (names of the round's variants)")
    parser.add_argument("--rerun", action="store_true", help="rerun variants that already have a cv.json")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--smoke", action="store_true", help="1 epoch, tiny widths, 1 repeat (CI)")
    parser.add_argument(
        "--screen", action="store_true",
        help="outer models only (5 trainings, selection cross-fitted, not nested); the baseline stays nested",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    command = "python -m pipeline.train.search " + shlex.join(argv if argv is not None else sys.argv[1:])
    start, variants = ROUNDS[args.start]
    unknown = sorted(set(args.variants or ()) - set(variants))
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; this round has {', '.join(variants)}")
    base_name = next(n for n, c in variants.items() if not c)
    results: dict[str, dict[str, Any]] = {}
    for name in args.variants or list(variants):
        changes = variants[name]
        out = args.out / name
        done = out / "cv.json"
        if done.is_file() and not args.rerun:
            results[name] = json.loads(done.read_text())
            continue
        recipe = replace(start, **changes)
        if args.smoke:
            recipe = replace(
                recipe,
                widths=tuple(max(w // 4, 2) for w in recipe.widths),
                epochs=1,
                repeats=1,
                swa_epochs=min(recipe.swa_epochs, 1),
            )
        load_before, started = _load(), time.monotonic()
        inner = not args.screen or name == base_name
        results[name] = run_cv(recipe, args.data, out, resume=True, inner_models=inner)
        results[name] |= {"load_before": load_before, "load_after": _load(),
                          "wall_minutes": round((time.monotonic() - started) / 60, 2)}  # fmt: skip
        done.write_text(json.dumps(results[name], indent=2, sort_keys=True))
        log.info("%s: nested F1 %.3f", name, results[name]["nested"]["f1"])
    for name in variants:  # every finished variant goes into the table, in the table's order
        done = args.out / name / "cv.json"
        if name not in results and done.is_file():
            results[name] = json.loads(done.read_text())
    base = results.get(base_name)
    rows = [
        _row(n, variants[n], results[n], base if n != base_name else None) for n in variants if n in results
    ]
    table = markdown(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.md").write_text(f"`{command.strip()}`\n\n" + table)
    (args.out / "search.json").write_text(json.dumps({"command": command.strip(), "rows": rows,
                                                      "recipe": asdict(start)}, indent=2))  # fmt: skip
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
