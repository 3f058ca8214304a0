"""Checkpoint tensors are read straight into the model: the same values, no second copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipeline.bands import SWEEP_BANDS
from pipeline.models.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from pipeline.models.registry import build_model, default_config

TINY = {**default_config("unet"), "widths": [8, 16, 32, 64]}


def _meta() -> CheckpointMeta:
    n = len(SWEEP_BANDS)
    return CheckpointMeta(
        model="unet", config=TINY, bands=SWEEP_BANDS, norm_mean=(0.0,) * n, norm_std=(1.0,) * n
    )


def test_loaded_tensors_are_the_files_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(3)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, build_model("unet", TINY).state_dict(), _meta())
    model, _ = load_checkpoint(path)
    expected = load_file(str(path))
    got = model.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


def test_a_half_precision_file_is_converted_as_load_state_dict_converts_it(tmp_path: Path) -> None:
    torch.manual_seed(4)
    state = {
        k: v.half() if v.is_floating_point() else v for k, v in build_model("unet", TINY).state_dict().items()
    }
    path = tmp_path / "half.safetensors"
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(path), metadata={"landslide": _meta().to_json()}
    )
    model, _ = load_checkpoint(path)
    reference = build_model("unet", TINY)
    reference.load_state_dict(state)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_a_tensor_of_another_shape_is_refused_in_one_line(tmp_path: Path) -> None:
    state = build_model("unet", TINY).state_dict()
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(state[name].shape[0] + 1, *state[name].shape[1:])
    path = tmp_path / "bad.safetensors"
    save_checkpoint(path, state, _meta())
    with pytest.raises(CheckpointError, match=f"tensor {name} is F32") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
