"""Every picture in docs/img records the checkpoint it was made from, and that is the shipped one.

The pictures are made by ``python -m pipeline.figures`` (``make figures``), which writes the
checkpoint file's SHA-256 and its own command into each PNG's text chunks. A picture made from
another checkpoint (or by hand, with no record) fails here: re-run the command.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.figures import (
    CHECKPOINT_KEY,
    CHECKPOINT_NAME_KEY,
    COMMAND_KEY,
    DOCS_IMG,
    RELIABILITY_PNG,
    WEBMAP_PNGS,
    FigureSource,
    read_stamp,
    stamp_png,
)
from pipeline.models.checkpoint import sha256_file, shipped_checkpoint

ROOT = DOCS_IMG.parents[1]
PICTURES = sorted(DOCS_IMG.glob("*.png"))


def test_the_figures_command_makes_every_picture_in_docs() -> None:
    assert {p.name for p in PICTURES} == {RELIABILITY_PNG, *WEBMAP_PNGS}
    linked = set()
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        linked |= {Path(m).name for m in re.findall(r"\(((?:docs/)?img/[^)\s]+\.png)\)", md.read_text())}
    assert linked <= {p.name for p in PICTURES}, linked


@pytest.mark.parametrize("png", PICTURES, ids=[p.name for p in PICTURES])
def test_each_picture_records_the_shipped_checkpoint(png: Path) -> None:
    stamp = read_stamp(png)
    shipped = shipped_checkpoint()
    assert CHECKPOINT_KEY in stamp, f"{png.name} records no checkpoint: run `make figures`"
    assert stamp[CHECKPOINT_KEY] == sha256_file(shipped), (
        f"{png.name} was made from checkpoint {stamp[CHECKPOINT_KEY][:12]}, not the shipped "
        f"{sha256_file(shipped)[:12]}: run `make figures`"
    )
    assert stamp[CHECKPOINT_NAME_KEY] == shipped.name
    assert stamp[COMMAND_KEY].startswith(("python -m pipeline.figures", "python -m pipeline.train.ship"))


def test_stamp_keeps_the_pixels_and_replaces_an_older_record(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    Image.fromarray(rgb).save(path)
    assert read_stamp(path) == {}
    stamp_png(path, FigureSource("a" * 64, "old.safetensors", "cmd 1"))
    stamp_png(path, FigureSource("b" * 64, "new.safetensors", "cmd 2"))
    assert read_stamp(path) == {
        CHECKPOINT_KEY: "b" * 64,
        CHECKPOINT_NAME_KEY: "new.safetensors",
        COMMAND_KEY: "cmd 2",
    }
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)


def test_shipped_oof_redraws_only_the_checkpoint_fitted_on_it(
    tmp_path: Path, tiny_unet_checkpoint: Path
) -> None:
    """The OOF logits beside a checkpoint round-trip; a checkpoint with another fit is refused."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from pipeline.errors import UserError
    from pipeline.models.checkpoint import Calibration, read_meta, save_checkpoint
    from pipeline.train.shipped_oof import load_shipped_oof, reliability_figure, write_shipped_oof

    rng = np.random.default_rng(1)
    logits = rng.normal(-2, 2, (3, 128, 128)).astype(np.float32)
    labels = (rng.random((3, 128, 128)) < 0.1).astype(np.uint8)
    np.savez_compressed(tmp_path / "oof.npz", logits=logits, labels=labels, fold=np.array([0, 1, 2]))
    ckpt = tmp_path / "m.safetensors"
    meta = read_meta(tiny_unet_checkpoint)
    save_checkpoint(ckpt, load_file(str(tiny_unet_checkpoint)), meta)
    write_shipped_oof(tmp_path / "oof.npz", ckpt)
    got = load_shipped_oof(ckpt)
    np.testing.assert_array_equal(got["labels"], labels)
    np.testing.assert_allclose(got["logits"], logits, atol=0.01)  # float16 on disk
    assert reliability_figure(ckpt, tmp_path / "r.png").stat().st_size > 0
    refit = replace(meta, calibration=Calibration("platt", 2.0, -3.0))
    save_checkpoint(ckpt, load_file(str(tiny_unet_checkpoint)), refit)
    with pytest.raises(UserError, match="was not the fit of"):
        load_shipped_oof(ckpt)
    with pytest.raises(UserError, match="not the CV run of this checkpoint"):
        write_shipped_oof(tmp_path / "oof.npz", ckpt)  # Platt refitted on these logits is not (2, -3)


def test_shipped_oof_beside_the_shipped_checkpoint_is_its_fit() -> None:
    from pipeline.train.shipped_oof import load_shipped_oof, oof_path

    if not oof_path(shipped_checkpoint()).is_file():
        # shipped before the OOF logits were kept: its diagram must come from its own ship run
        assert read_stamp(DOCS_IMG / RELIABILITY_PNG)[COMMAND_KEY].startswith("python -m pipeline.train.ship")
        return
    assert load_shipped_oof(shipped_checkpoint())["logits"].shape[1:] == (128, 128)
