"""One experiment: a model trained over several seeds, thresholds locked on validation, tested once.

Per seed (``OUT/seed_<seed>/``): :func:`~pipeline.train.loop.fit` on train/validation, then the
threshold is swept on *validation* over 0.55-0.85 and locked, and only then the test split is
read and scored at the locked threshold and at 0.5. The best model is written as a project
checkpoint (``model.safetensors``) with the threshold, bands, normalisation and a training summary.
Across seeds, ``OUT/summary.json`` and ``OUT/summary.md`` give mean +/- std.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from pipeline import __version__
from pipeline.models.checkpoint import CheckpointMeta, save_checkpoint
from pipeline.train.config import TrainConfig
from pipeline.train.data import BandStatistics, ChipSet, DataLayout, band_statistics, detect_layout
from pipeline.train.loop import evaluate_counts, fit
from pipeline.train.metrics import SELECTION_THRESHOLD, SWEEP_THRESHOLDS, choose_threshold, mean_std

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class PreparedData:
    """Train and validation chips in memory; test chips listed but not read until asked."""

    layout: DataLayout
    bands: tuple[str, ...]
    stats: BandStatistics
    train: ChipSet
    validation: ChipSet

    def load_test(self) -> ChipSet | None:
        """Read the test split (None when the dataset has no test split or no test masks)."""
        chips = self.layout.splits.get("test", ())
        if not chips or any(c.mask is None for c in chips):
            log.warning("%s: no test split with masks; test metrics are skipped", self.layout.root)
            return None
        return ChipSet(chips, self.bands, self.stats)


def prepare_data(
    data_dir: str | Path, bands: Sequence[str], flat_split: dict[str, list[int]] | None = None
) -> PreparedData:
    """Detect the layout, compute train-only statistics and load train and validation chips."""
    layout = detect_layout(data_dir, flat_split)
    stats = band_statistics(layout.chips("train"), bands)
    return PreparedData(
        layout, tuple(bands), stats,
        ChipSet(layout.chips("train"), bands, stats), ChipSet(layout.chips("validation"), bands, stats),
    )


def run_seed(
    config: TrainConfig, data: PreparedData, run_dir: str | Path, *, resume: bool = False,
    command: str = "", device: torch.device | None = None,
) -> dict[str, Any]:
    """Train one seed, lock the threshold on validation, test once, write the checkpoint.

    Returns:
        The seed's summary (also written to ``run_dir/summary.json``).
    """
    run_dir = Path(run_dir)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = fit(config, data.train, data.validation, run_dir, resume=resume, device=device)
    thresholds = tuple(sorted({*SWEEP_THRESHOLDS, SELECTION_THRESHOLD, 0.5}))
    val = evaluate_counts(result.model, data.validation, thresholds, config.batch_size, device, config.amp)
    chosen = choose_threshold(s for s in val.scores() if s.threshold in SWEEP_THRESHOLDS)
    threshold = chosen.threshold  # locked before any test chip is read
    summary: dict[str, Any] = {
        "model": config.model, "seed": config.seed, "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run, "threshold": threshold,
        "validation": {"locked": chosen.as_dict(), "at_0.70": val.at(SELECTION_THRESHOLD).as_dict(),
                       "at_0.5": val.at(0.5).as_dict()},
    }
    test_set = data.load_test()
    if test_set is not None:
        test = evaluate_counts(
            result.model, test_set, (threshold, 0.5), config.batch_size, device, config.amp
        )
        summary["test"] = {"locked": test.at(threshold).as_dict(), "at_0.5": test.at(0.5).as_dict()}
    meta = CheckpointMeta(
        model=config.model, config=dict(config.model_config), bands=data.bands,
        norm_mean=data.stats.mean, norm_std=data.stats.std, threshold=threshold,
        training={
            "command": command, "data_layout": data.layout.kind, "data_root": str(data.layout.root),
            "split_ids": data.layout.split_ids(), "train_config": json.loads(config.fingerprint()),
            "history": result.history, **{k: v for k, v in summary.items() if k not in ("model",)},
        },
        software_version=__version__,
    )
    summary["checkpoint"] = str(run_dir / CHECKPOINT_FILE)
    summary["checkpoint_sha256"] = save_checkpoint(run_dir / CHECKPOINT_FILE, result.model.state_dict(), meta)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


#: Columns of the seed table: (label, path into a seed summary).
_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("test F1 (locked)", ("test", "locked", "f1")),
    ("test F1 @0.5", ("test", "at_0.5", "f1")),
    ("test precision", ("test", "locked", "precision")),
    ("test recall", ("test", "locked", "recall")),
    ("test IoU", ("test", "locked", "iou")),
    ("val F1 (locked)", ("validation", "locked", "f1")),
    ("threshold", ("threshold",)),
)


def _get(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)


def aggregate(seed_summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Mean, std and n per column over seeds (columns missing everywhere are left out)."""
    table: dict[str, dict[str, float | int]] = {}
    for label, path in _COLUMNS:
        values = [v for s in seed_summaries if (v := _get(s, path)) is not None]
        if values:
            mean, std = mean_std(values)
            table[label] = {"mean": mean, "std": std, "n": len(values)}
    return table


def markdown_table(per_model: dict[str, dict[str, dict[str, float | int]]], percent: bool = True) -> str:
    """A Markdown table, one row per model, ``mean +/- std`` per column (x100 when ``percent``)."""
    labels = [label for label, _ in _COLUMNS]
    lines = ["| model | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for model, table in per_model.items():
        cells = []
        for label in labels:
            if label not in table:
                cells.append("-")
                continue
            scale = 1.0 if (label == "threshold" or not percent) else 100.0
            cell = table[label]
            cells.append(f"{cell['mean'] * scale:.1f} +/- {cell['std'] * scale:.1f}" if label != "threshold"
                         else f"{cell['mean']:.2f} +/- {cell['std']:.2f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_experiment(
    base: TrainConfig, data: PreparedData, seeds: Sequence[int], out: str | Path, *,
    resume: bool = False, command: str = "", device: torch.device | None = None,
) -> dict[str, Any]:
    """Run :func:`run_seed` for each seed under ``out/seed_<seed>`` and write the summary table.

    Returns:
        ``{"model", "seeds", "per_seed", "table"}`` (also ``out/summary.json`` and ``out/summary.md``).
    """
    out = Path(out)
    per_seed = [
        run_seed(replace(base, seed=seed), data, out / f"seed_{seed}", resume=resume, command=command,
                 device=device)
        for seed in seeds
    ]
    table = aggregate(per_seed)
    summary = {"model": base.model, "seeds": list(seeds), "per_seed": per_seed, "table": table,
               "data_layout": data.layout.kind, "train_config": asdict(base) | {"seed": None}}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    (out / "summary.md").write_text(
        f"# {base.model}: {len(seeds)} seed(s) {list(seeds)}, {data.layout.kind} layout\n\n"
        "Percent; mean +/- sample std over seeds; test metrics over all test pixels at the threshold "
        "locked on validation.\n\n" + markdown_table({base.model: table})
    )
    return summary
