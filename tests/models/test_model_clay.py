"""Clay v1.5 encoder: parity with the reference, strict loading, safety, parameter count."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from clay_reference import encoder_forward, random_state
from safetensors.torch import save_file

from pipeline.bands import S2_BANDS_L4S, WAVELENGTHS_UM
from pipeline.errors import UserError
from pipeline.models.checkpoint import CheckpointError
from pipeline.models.clay import ClayEncoder, clay_config

WAVES = torch.tensor([WAVELENGTHS_UM[b] for b in S2_BANDS_L4S])


def _cube(batch: int = 2, size: int = 64, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "pixels": torch.randn(batch, len(WAVES), size, size, generator=g),
        "time": torch.randn(batch, 4, generator=g),
        "latlon": torch.randn(batch, 4, generator=g),
        "gsd": torch.tensor(10.0),
        "waves": WAVES,
    }


def _lightning_checkpoint(path: Path, encoder_state: dict[str, torch.Tensor]) -> Path:
    state = {"model.encoder." + k: v for k, v in encoder_state.items()}
    state["model.decoder.mask_patch"] = torch.zeros(8)  # must be ignored
    state["model.proj.weight"] = torch.zeros(4, 4)  # must be ignored
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": {"dim": 64}}, path)
    return path


@pytest.mark.parametrize("size", [64, 128])
def test_parity_with_reference(size: int) -> None:
    state = random_state(seed=size)
    encoder = ClayEncoder(clay_config("tiny"))
    encoder.load_state_dict(state, strict=True)
    encoder.eval()
    cube = _cube(size=size)
    with torch.no_grad():
        ours = encoder(cube)
        reference = encoder_forward(state, cube)
    assert ours.shape == (2, 1 + (size // 8) ** 2, 64)
    assert (ours - reference).abs().max().item() <= 1e-5


def test_token_map_drops_cls_and_uses_zero_metadata() -> None:
    state = random_state(seed=3)
    encoder = ClayEncoder(clay_config("tiny")).eval()
    encoder.load_state_dict(state)
    cube = _cube(size=64)
    with torch.no_grad():
        tokens = encoder.token_map(cube["pixels"], WAVES, gsd=10.0)
        cube["time"] = torch.zeros(2, 4)
        cube["latlon"] = torch.zeros(2, 4)
        reference = encoder_forward(state, cube)[:, 1:]
    assert tokens.shape == (2, 64, 8, 8)
    assert torch.allclose(tokens.flatten(2).transpose(1, 2), reference, atol=1e-5)


def test_loads_official_lightning_layout(tmp_path: Path) -> None:
    state = random_state(seed=5)
    path = _lightning_checkpoint(tmp_path / "clay-tiny.ckpt", state)
    encoder = ClayEncoder.from_checkpoint(path)
    assert encoder.config.dim == 64 and encoder.config.depth == 2 and encoder.config.heads == 2
    assert encoder.config.patch_size == 8 and encoder.config.wave_dim == 32
    cube = _cube(size=64)
    with torch.no_grad():
        diff = (encoder(cube) - encoder_forward(state, cube)).abs().max().item()
    assert diff <= 1e-5


def test_loads_safetensors(tmp_path: Path) -> None:
    state = random_state(seed=6)
    save_file(state, str(tmp_path / "clay.safetensors"))
    encoder = ClayEncoder.from_checkpoint(tmp_path / "clay.safetensors")
    assert set(encoder.state_dict()) == set(state)


def test_missing_key_is_named(tmp_path: Path) -> None:
    state = random_state(seed=7)
    del state["transformer.layers.1.0.to_out.weight"]
    path = _lightning_checkpoint(tmp_path / "broken.ckpt", state)
    with pytest.raises(CheckpointError, match=r"transformer\.layers\.1\.0\.to_out\.weight"):
        ClayEncoder.from_checkpoint(path)


def test_unexpected_key_is_named(tmp_path: Path) -> None:
    state = random_state(seed=8)
    state["mask_token"] = torch.zeros(64)
    path = _lightning_checkpoint(tmp_path / "extra.ckpt", state)
    with pytest.raises(CheckpointError, match="mask_token"):
        ClayEncoder.from_checkpoint(path)


def test_not_clay_and_missing_file(tmp_path: Path) -> None:
    torch.save({"state_dict": {"model.encoder.foo": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a Clay encoder"):
        ClayEncoder.from_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        ClayEncoder.from_checkpoint(tmp_path / "absent.ckpt")


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    state = {"model.encoder." + k: v for k, v in random_state(seed=9).items()}
    torch.save({"state_dict": state, "payload": _Exploit()}, tmp_path / "evil.ckpt")
    with open(tmp_path / "evil.pkl", "wb") as fh:  # legacy plain pickle
        pickle.dump({"state_dict": state, "payload": _Exploit()}, fh)
    for name in ("evil.ckpt", "evil.pkl"):
        with pytest.raises(CheckpointError):
            ClayEncoder.from_checkpoint(tmp_path / name)
    assert not (tmp_path / "pwned").exists()


def test_large_has_311m_parameters() -> None:
    with torch.device("meta"):
        encoder = ClayEncoder(clay_config("large"))
    n_params = sum(p.numel() for p in encoder.parameters())
    assert abs(n_params - 311e6) / 311e6 < 0.01


def test_from_pretrained_offline_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        ClayEncoder.from_pretrained(cache_dir=tmp_path, local_files_only=True)
    message = str(info.value)
    assert "\n" not in message
    assert "--clay-checkpoint" in message and "made-with-clay/Clay" in message
    assert isinstance(info.value, UserError)


def test_unknown_size() -> None:
    with pytest.raises(KeyError, match="large"):
        clay_config("huge")
