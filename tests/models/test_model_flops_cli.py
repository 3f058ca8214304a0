"""Parameter/FLOP counting on the meta device and the ``landslide models`` command."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.bands import SWEEP_BANDS
from pipeline.cli import main
from pipeline.models.flops import measure
from pipeline.models.registry import build_model


def test_meta_count_matches_real_model() -> None:
    config = {"in_channels": len(SWEEP_BANDS), "widths": [8, 16, 32, 64], "dropout": 0.1}
    cost = measure("unet", config)
    model = build_model("unet", config).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, len(SWEEP_BANDS), 128, 128))
    assert cost.parameters == sum(p.numel() for p in model.parameters())
    assert cost.gflop_per_chip == pytest.approx(counter.get_total_flops() / 1e9)
    # First 3x3 convolution alone: 2 * 128*128 * 13 * 9 * 8 multiply-adds.
    assert cost.gflop_per_chip > 2 * 128 * 128 * 13 * 9 * 8 / 1e9


def test_models_command_lists_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"unet", "clay", "hybrid"}
    assert 17e6 < rows["unet"]["parameters"] < 18e6
    assert 311e6 < rows["clay"]["parameters"] < 313e6
    assert rows["hybrid"]["parameters"] > rows["clay"]["parameters"]
    assert 150 < rows["clay"]["gflop_per_chip"] < 175
    assert 15 < rows["unet"]["gflop_per_chip"] < 25
