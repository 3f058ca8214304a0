"""The shipped-checkpoint command, smoke variant (what CI runs): CV, calibration, final model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.models.checkpoint import load_checkpoint
from pipeline.train import ship

from .conftest import SAMPLE

POOL = (3, 16, 28, 72, 512)


@pytest.mark.timeout(1500)  # seven 1-epoch trainings + calibration fits (old six: 12.7 min at load 24)
def test_ship_smoke_writes_a_calibrated_checkpoint(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    for sub, name in (("img", "image"), ("mask", "mask")):
        (pool / sub).mkdir(parents=True)
        for i in POOL:
            shutil.copy(SAMPLE / sub / f"{name}_{i}.h5", pool / sub / f"{name}_{i}.h5")
    dest, png = tmp_path / "ship.safetensors", tmp_path / "reliability.png"
    assert (
        ship.main(
            [
                "--smoke",
                "--folds",
                "3",
                "--data",
                str(pool),
                "--out",
                str(tmp_path / "run"),
                "--dest",
                str(dest),
                "--png",
                str(png),
            ]
        )
        == 0
    )
    _, meta = load_checkpoint(dest)
    assert meta.calibration is not None
    assert meta.calibration.method in ("temperature", "platt", "beta", "isotonic")
    assert meta.calibration.base_rate is not None and 0 < meta.calibration.base_rate < 1
    assert meta.training["terrain"] == "sweep" and meta.training["split_ids"]["train"] == list(POOL)
    report = json.loads(dest.with_suffix(".json").read_text())
    cv = report["cv"]
    assert sorted(i for f in cv["folds"] for i in f) == list(POOL)
    assert cv["threshold"] == meta.threshold
    for key in ("raw", "nested", "tta", "ensemble", "cross_fitted", "in_sample", "l2a_shifted"):
        assert {"ece", "max_gap", "brier", "brier_skill"} <= set(cv[key])
    assert set(cv["methods"]) == {"temperature", "platt", "beta", "isotonic"}
    assert len(cv["nested"]["fold_thresholds"]) == 3 and len(cv["nested"]["fold_methods"]) == 3
    assert {"f1", "precision", "recall", "iou"} <= set(cv["rule"])
    oof = np.load(tmp_path / "run" / "oof.npz")
    assert sorted(oof["chip_ids"].tolist()) == list(POOL) and oof["logits"].shape == (5, 128, 128)
    # each chip has an inner logit for every outer fold but its own (NaN there)
    inner = oof["inner"]
    assert inner.shape == (5, 3, 128, 128)
    for c, f in enumerate(oof["fold"]):
        assert np.isnan(inner[c, f]).all() and np.isfinite(np.delete(inner[c], f, axis=0)).all()
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the diagram names the checkpoint it shows, and the OOF logits to redraw it stay beside it
    from pipeline.figures import CHECKPOINT_KEY, read_stamp
    from pipeline.models.checkpoint import sha256_file
    from pipeline.train.shipped_oof import load_shipped_oof

    assert read_stamp(png)[CHECKPOINT_KEY] == sha256_file(dest)
    np.testing.assert_array_equal(load_shipped_oof(dest)["labels"].astype(bool), oof["labels"].astype(bool))
