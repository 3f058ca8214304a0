"""U-Net shape/gradient checks and the registry contract."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.bands import SWEEP_BANDS
from pipeline.models.registry import MODEL_NAMES, build_model, default_config
from pipeline.models.unet import UNet


def test_unet_forward_backward_shapes() -> None:
    torch.manual_seed(0)
    model = UNet(in_channels=13, widths=(8, 16, 32, 64))
    x = torch.randn(2, 13, 128, 128)
    bottleneck, skips = model.encode(x)
    assert bottleneck.shape == (2, 64, 8, 8)
    assert [s.shape[-1] for s in skips] == [128, 64, 32, 16]
    logits = model(x)
    assert logits.shape == (2, 1, 128, 128)
    logits.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_unet_paper_size() -> None:
    model = build_model("unet", default_config("unet"))
    assert isinstance(model, UNet)
    assert model.in_channels == len(SWEEP_BANDS)
    n_params = sum(p.numel() for p in model.parameters())
    assert 17.0e6 < n_params < 17.5e6


def test_unet_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        UNet(3, widths=(4, 8, 8, 8))(torch.zeros(1, 3, 120, 120))


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(KeyError) as info:
        build_model("segformer", {})
    for name in MODEL_NAMES:
        assert name in str(info.value)


def test_unet_config_is_json() -> None:
    config = default_config("unet", bands=("B02", "B03", "B04", "slope"))
    assert json.loads(json.dumps(config)) == config
    assert config["in_channels"] == 4
