"""Clay-only segmenter and hybrid on tiny configs; registry checkpoint round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from clay_reference import random_state
from safetensors.torch import save_file

from pipeline.bands import SWEEP_BANDS
from pipeline.models.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from pipeline.models.clay_seg import ClaySegmenter
from pipeline.models.hybrid import HybridUNetClay
from pipeline.models.registry import MODEL_NAMES, build_model, default_config

TINY: dict[str, dict[str, Any]] = {
    "unet": {"in_channels": len(SWEEP_BANDS), "widths": [8, 16, 32, 64], "dropout": 0.1},
    "clay": {"bands": list(SWEEP_BANDS), "clay": {"size": "tiny"}},
    "hybrid": {"bands": list(SWEEP_BANDS), "widths": [8, 16, 32, 64], "clay": {"size": "tiny"}},
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, TINY[name])
    x = torch.randn(2, len(SWEEP_BANDS), 128, 128)
    logits = model(x)
    assert logits.shape == (2, 1, 128, 128)
    assert torch.isfinite(logits).all()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.rand_like(logits).round()).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_checkpoint_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(name, json.loads(json.dumps(TINY[name]))).eval()
    meta = CheckpointMeta(
        model=name,
        config=TINY[name],
        bands=SWEEP_BANDS,
        norm_mean=(0.0,) * len(SWEEP_BANDS),
        norm_std=(1.0,) * len(SWEEP_BANDS),
    )
    save_checkpoint(tmp_path / "m.safetensors", model.state_dict(), meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded_meta.model == name
    x = torch.randn(1, len(SWEEP_BANDS), 128, 128)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_clay_sees_only_s2_bands() -> None:
    model = ClaySegmenter(bands=list(SWEEP_BANDS), clay={"size": "tiny"})
    assert model.clay.spectral_bands == tuple(b for b in SWEEP_BANDS if b.startswith("B"))
    assert model.terrain_bands == ("slope", "dem")
    assert model.alpha_bottleneck.item() == 0.0 and model.alpha_decoder.item() == 0.0
    waves = model.clay.waves.tolist()
    assert waves[0] == pytest.approx(0.443, abs=1e-6) and len(waves) == 11
    # Terrain inputs do not reach the Clay branch: changing them leaves its tokens unchanged.
    model.eval()
    x = torch.randn(1, len(SWEEP_BANDS), 64, 64)
    y = x.clone()
    y[:, -2:] += 5.0
    with torch.no_grad():
        assert torch.equal(model.clay(x), model.clay(y))


def test_clay_seg_without_terrain() -> None:
    model = ClaySegmenter(bands=["B02", "B03", "B04", "B08"], clay={"size": "tiny"})
    assert model.terrain is None
    assert model(torch.randn(1, 4, 64, 64)).shape == (1, 1, 64, 64)


def test_no_spectral_band_is_an_error() -> None:
    with pytest.raises(ValueError, match="no Sentinel-2 band"):
        HybridUNetClay(bands=["slope", "dem"], clay={"size": "tiny"})


def test_hybrid_bottleneck_fusion_shapes() -> None:
    model = HybridUNetClay(bands=list(SWEEP_BANDS), widths=[8, 16, 32, 64], clay={"size": "tiny"})
    assert model.context[0].in_channels == 64 and model.context[0].out_channels == 64
    assert model.fuse[0].in_channels == 128 and model.fuse[-3].out_channels == 64


def test_load_pretrained_clay_into_branch(tmp_path: Path) -> None:
    state = random_state(seed=11)
    save_file(state, str(tmp_path / "clay.safetensors"))
    model = HybridUNetClay(bands=list(SWEEP_BANDS), widths=[8, 16, 32, 64], clay={"size": "tiny"})
    model.clay.load_pretrained(tmp_path / "clay.safetensors")
    assert torch.equal(model.clay.encoder.cls_token, state["cls_token"])
    wrong = random_state(dim=128, seed=12)
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit"):
        model.clay.load_pretrained(tmp_path / "wrong.safetensors")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_configs_are_json(name: str) -> None:
    config = default_config(name)
    assert json.loads(json.dumps(config)) == config


def _tensor_bytes(data: bytes) -> bytes:
    return data[8 + int.from_bytes(data[:8], "little") :]


def test_checkpoint_records_and_checks_its_tensor_digest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Saving records the digest of the tensor bytes; one flipped byte is refused at load; an old
    file without the digest loads with a warning, and stamping it leaves its tensor bytes as they were."""
    from safetensors import safe_open

    from pipeline.models.checkpoint import DIGEST_KEY, stamp_tensor_digest, verify_tensor_digest

    torch.manual_seed(2)
    model = build_model("unet", TINY["unet"]).eval()
    zeros, ones = (0.0,) * len(SWEEP_BANDS), (1.0,) * len(SWEEP_BANDS)
    meta = CheckpointMeta(
        model="unet", config=TINY["unet"], bands=SWEEP_BANDS, norm_mean=zeros, norm_std=ones
    )
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model.state_dict(), meta)
    with safe_open(str(path), framework="pt") as fh:
        recorded = (fh.metadata() or {})[DIGEST_KEY]
    assert verify_tensor_digest(path) == recorded
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupt"):
        load_checkpoint(bad)
    # An old checkpoint: the same tensors, written without the digest.
    old = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old),
              metadata={"landslide": meta.to_json()})  # fmt: skip
    with caplog.at_level("WARNING"):
        assert verify_tensor_digest(old) is None
        load_checkpoint(old)
    assert "records no tensor digest" in caplog.text
    before = old.read_bytes()
    assert stamp_tensor_digest(old) == recorded  # the same tensor bytes as the saved file
    after = old.read_bytes()
    assert _tensor_bytes(after) == _tensor_bytes(before) == _tensor_bytes(path.read_bytes())


def test_the_shipped_checkpoint_records_a_matching_digest() -> None:
    from pipeline.models.checkpoint import sha256_file, shipped_checkpoint, verify_tensor_digest

    assert verify_tensor_digest(shipped_checkpoint()) is not None  # recorded, and the data matches it
    sidecar = json.loads(shipped_checkpoint().with_suffix(".json").read_text())
    assert sidecar["sha256"] == sha256_file(shipped_checkpoint())  # the report describes this very file
