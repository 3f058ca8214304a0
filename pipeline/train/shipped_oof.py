"""The shipped checkpoint's out-of-fold (OOF) predictions, kept beside it, and its reliability diagram.

``python -m pipeline.train.ship`` fits the checkpoint's calibration and threshold on the OOF logits
of its cross-validation. It keeps those logits beside the checkpoint
(``unet-l4s-sample.oof.npz``: logits as float16, labels as bits, about 0.4 MB) so that the
reliability diagram in ``docs/img`` can be drawn again from the shipped files alone
(``python -m pipeline.figures``), without training. The file records the calibration and threshold
fitted on it; a checkpoint whose calibration or threshold differ was not fitted on these logits,
and drawing its diagram from them is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pipeline.errors import UserError
from pipeline.models.checkpoint import CheckpointMeta, read_meta, sha256_file


def oof_path(checkpoint: str | Path) -> Path:
    """Where the OOF predictions of ``checkpoint`` are kept (``NAME.oof.npz`` beside it)."""
    return Path(checkpoint).with_suffix(".oof.npz")


def _fit_record(meta: CheckpointMeta) -> NDArray[np.float64]:
    c = meta.calibration_or_identity
    return np.array([c.scale, c.bias, meta.threshold], dtype=np.float64)


def _check_fit(logits: NDArray[np.float32], labels: NDArray[np.bool_], meta: CheckpointMeta) -> None:
    """Refuse OOF logits on which the checkpoint's calibration was not fitted (refitted here)."""
    from pipeline.train.calibration import fit_calibration

    c = meta.calibration_or_identity
    if c.method not in ("temperature", "platt"):
        return
    refit = fit_calibration(logits, labels.astype(np.uint8), c.method)
    same = np.isclose(refit.scale, c.scale, rtol=1e-4) and np.isclose(refit.bias, c.bias, rtol=1e-4)
    if not same:
        raise UserError(
            f"these OOF logits fit {c.method} scale {refit.scale:.5f} bias {refit.bias:.5f}, not the "
            f"checkpoint's {c.scale:.5f} {c.bias:.5f}: they are not the CV run of this checkpoint"
        )


def write_shipped_oof(oof_npz: str | Path, checkpoint: str | Path) -> Path:
    """Keep the OOF logits and labels of a CV run (its ``oof.npz``) beside ``checkpoint``.

    Raises:
        UserError: When the checkpoint's calibration, refitted on these logits, comes out
            different (they are not the CV run it was fitted on).
    """
    arrays = np.load(oof_npz)
    logits = np.asarray(arrays["logits"], dtype=np.float32)
    labels = np.asarray(arrays["labels"]).astype(bool)
    _check_fit(logits, labels, read_meta(checkpoint))
    dest = oof_path(checkpoint)
    tmp = dest.with_name(f".{dest.name}.tmp.npz")
    fields: dict[str, Any] = {
        "logits": logits.astype(np.float16),
        "labels": np.packbits(labels.ravel()),
        "shape": np.array(labels.shape, dtype=np.int64),
        "fold": np.asarray(arrays["fold"]),
        "fit": _fit_record(read_meta(checkpoint)),
        "checkpoint_sha256": np.array(sha256_file(checkpoint)),
    }
    if "inner" in arrays.files:  # nested CV: each chip's inner logits (NaN on its own fold)
        fields["inner"] = np.asarray(arrays["inner"]).astype(np.float16)
    np.savez_compressed(tmp, **fields)
    tmp.replace(dest)
    return dest


def load_shipped_oof(checkpoint: str | Path) -> dict[str, Any]:
    """The OOF ``logits`` (float32), ``labels`` (uint8), ``fold`` (and ``inner``) beside ``checkpoint``.

    Raises:
        UserError: When there is no such file, or its calibration and threshold are not the
            checkpoint's (the checkpoint was not fitted on these logits).
    """
    path = oof_path(checkpoint)
    if not path.is_file():
        raise UserError(f"{path} not found: run `python -m pipeline.train.ship`, which writes it")
    arrays = np.load(path)
    if not np.array_equal(arrays["fit"], _fit_record(read_meta(checkpoint))):
        raise UserError(
            f"{path} was not the fit of {Path(checkpoint).name} (calibration/threshold "
            f"{arrays['fit'].tolist()} vs {_fit_record(read_meta(checkpoint)).tolist()}): "
            "run `python -m pipeline.train.ship` again"
        )
    shape = tuple(int(n) for n in arrays["shape"])
    labels = np.unpackbits(arrays["labels"], count=int(np.prod(shape))).reshape(shape)
    out = {"logits": arrays["logits"].astype(np.float32), "labels": labels, "fold": arrays["fold"]}
    if "inner" in arrays.files:  # nested CV: each fold's inner logits (NaN on its own chips)
        out["inner"] = arrays["inner"].astype(np.float32)
    return out


def reliability_figure(checkpoint: str | Path, png: str | Path) -> Path:
    """Draw the OOF reliability diagram of ``checkpoint`` (raw sigmoid and its calibration) to ``png``."""
    from pipeline.train.calibration import reliability_png

    meta = read_meta(checkpoint)
    calibration = meta.calibration_or_identity
    oof = load_shipped_oof(checkpoint)
    z, y = oof["logits"], oof["labels"]
    raw = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    folds = len(np.unique(oof["fold"]))
    if "inner" in oof:  # the nested curve: each fold calibrated by a map fitted without it
        from pipeline.train.nested import nested

        crossed, _ = nested(
            z.astype(np.float64), oof["inner"].astype(np.float64), y, oof["fold"], calibration.method
        )
        curve, label, how = crossed.prob, f"{calibration.method}, nested OOF", "nested CV"
    else:
        curve = calibration.probabilities(torch.from_numpy(z)).double().numpy()
        label, how = f"{calibration.method} (OOF)", f"{folds}-fold CV"
    return reliability_png(
        png,
        {"raw sigmoid": (raw, y), label: (curve, y)},
        f"Out-of-fold reliability, {len(z)} L4S chips ({how})",
        meta.threshold,
    )
