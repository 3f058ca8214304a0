"""Shared fixtures: small real checkpoints and paths to the real sample data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pipeline.bands import SWEEP_BANDS
from pipeline.models.checkpoint import IDENTITY, CheckpointMeta, save_checkpoint
from pipeline.models.registry import build_model

#: The real sample data: ``shared/data`` beside the checkout (as on CI), or $LANDSLIDE_SHARED_DATA.
_BESIDE = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED = Path(os.environ.get("LANDSLIDE_SHARED_DATA", _BESIDE))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample data (Landslide4Sense chips, STAC items, rasters)."""
    if not SHARED.is_dir():
        pytest.skip(f"real sample data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def tiny_unet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small U-Net checkpoint with seeded random weights (for plumbing, never for results)."""
    torch.manual_seed(0)
    config = {"in_channels": len(SWEEP_BANDS), "widths": [8, 16, 32, 64], "dropout": 0.1}
    model = build_model("unet", config).eval()
    meta = CheckpointMeta(
        model="unet",
        config=config,
        bands=SWEEP_BANDS,
        norm_mean=tuple([1.0] * len(SWEEP_BANDS)),
        norm_std=tuple([0.5] * len(SWEEP_BANDS)),
        threshold=0.5,
        training={"note": "random weights for tests"},
        calibration=IDENTITY,  # explicit: no warning about a missing calibration
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny-unet.safetensors"
    save_checkpoint(path, model.state_dict(), meta)
    return path
