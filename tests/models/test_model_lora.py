"""LoRA on the Clay encoder: what is trainable, how many adapters, merged == unmerged."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from pipeline.bands import SWEEP_BANDS
from pipeline.models.clay import ClayEncoder, clay_config
from pipeline.models.hybrid import HybridUNetClay
from pipeline.models.lora import LORA_TARGETS, apply_lora, lora_parameters, merge_lora


def _hybrid() -> HybridUNetClay:
    torch.manual_seed(0)
    return HybridUNetClay(bands=list(SWEEP_BANDS), widths=[8, 16, 32, 64], clay={"size": "tiny"})


def test_official_feedforward_indices_are_linear() -> None:
    block = ClayEncoder(clay_config("tiny")).transformer.layers[0]
    assert isinstance(block[1].net[1], torch.nn.Linear) and isinstance(block[1].net[3], torch.nn.Linear)
    assert isinstance(block[0].to_qkv, torch.nn.Linear) and isinstance(block[0].to_out, torch.nn.Linear)


def test_only_lora_trainable_inside_clay() -> None:
    model = _hybrid()
    keys_before = set(model.state_dict())
    outside_before = {n: p.requires_grad for n, p in model.named_parameters() if not n.startswith("clay.")}
    apply_lora(model, rank=8, alpha=8, dropout=0.1)
    config = clay_config("tiny")
    trainable = [n for n, p in model.clay.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # Two matrices (A, B) per target module per block.
    assert len(trainable) == 2 * len(LORA_TARGETS) * config.depth
    inner, hidden = config.heads * config.dim_head, int(config.dim * config.mlp_ratio)
    shapes = [(config.dim, 3 * inner), (inner, config.dim), (config.dim, hidden), (hidden, config.dim)]
    expected = config.depth * sum(8 * fan_in + fan_out * 8 for fan_in, fan_out in shapes)
    assert sum(p.numel() for p in lora_parameters(model)) == expected
    # Nothing added outside the targets; parts outside Clay untouched.
    # Base weights move under ``base_layer``; every new key belongs to a wrapped target.
    keys_after = set(model.state_dict())
    assert {k.replace(".base_layer", "") for k in keys_after if "lora_" not in k} == keys_before
    assert all(k.split(".lora_")[0].endswith(LORA_TARGETS) for k in keys_after if "lora_" in k)
    wrapped = {n.split(".")[-1] if "net" not in n else ".".join(n.split(".")[-2:])
               for n, m in model.named_modules() if isinstance(m, LoraLayer)}  # fmt: skip
    assert wrapped == set(LORA_TARGETS)
    outside_after = {n: p.requires_grad for n, p in model.named_parameters() if not n.startswith("clay.")}
    assert outside_after == outside_before


def test_merged_equals_unmerged() -> None:
    model = _hybrid()
    apply_lora(model)
    with torch.no_grad():  # B is zero-initialised: make the adapters do something
        for param in lora_parameters(model):
            param.normal_(0.0, 0.2)
    model.eval()
    x = torch.randn(2, len(SWEEP_BANDS), 64, 64)
    with torch.no_grad():
        unmerged = model(x)
        merge_lora(model)
        merged = model(x)
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    assert set(model.state_dict()) == set(_hybrid().state_dict())
    assert (merged - unmerged).abs().max().item() <= 1e-5


def test_lora_trains_and_twice_is_an_error() -> None:
    encoder = ClayEncoder(clay_config("tiny"))
    apply_lora(encoder, rank=4)
    cube = {"pixels": torch.randn(1, 3, 16, 16), "time": torch.zeros(1, 4), "latlon": torch.zeros(1, 4),
            "gsd": 10.0, "waves": torch.tensor([0.49, 0.56, 0.66])}  # fmt: skip
    encoder(cube).square().mean().backward()
    assert all(p.grad is not None for p in lora_parameters(encoder))
    assert encoder.cls_token.grad is None
    with pytest.raises(ValueError, match="already"):
        apply_lora(encoder)
    with pytest.raises(ValueError, match="match no module"):
        apply_lora(ClayEncoder(clay_config("tiny")), targets=("qkv_proj",))
