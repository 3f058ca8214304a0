"""Clay as a branch of a segmentation model: band selection, fixed metadata, token map.

Both Clay-based models take the model-contract input ``x [B, C, H, W]`` (all input bands) and
hand Clay only the Sentinel-2 bands among them (never ``slope``/``dem``), with their central
wavelengths from :data:`pipeline.bands.WAVELENGTHS_UM`, ``gsd = 10`` m and time and location
unknown (zeros, Clay's convention). Clay's output keeps its final LayerNorm; the CLS token is
dropped and the ``L = (H / P)(W / P)`` patch tokens are returned as a ``[B, D, H/P, W/P]`` map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.bands import WAVELENGTHS_UM, band_indices
from pipeline.models.clay import ClayConfig, ClayEncoder, clay_config

#: Ground sample distance (metres) given to Clay for Landslide4Sense-like 10 m chips.
CLAY_GSD_M = 10.0


def clay_config_from(spec: Mapping[str, Any] | None) -> ClayConfig:
    """Build a :class:`ClayConfig` from a JSON config's ``clay`` entry.

    ``None`` -> Clay v1.5 large; ``{"size": "tiny"}`` -> a named size; other keys override
    fields (``{"size": "tiny", "depth": 1}``) or give the full shape (``ClayConfig.to_dict()``).

    Raises:
        KeyError: For an unknown size. TypeError: For an unknown field.

    """
    fields = dict(spec or {})
    base = clay_config(str(fields.pop("size", "large")))
    return ClayConfig(**(base.to_dict() | fields))


class ClayBranch(nn.Module):
    """Runs a :class:`ClayEncoder` on the S2 bands of the model input.

    Args:
        bands: Names of the model's input channels, in order.
        clay: Clay shape (see :func:`clay_config_from`).
        gsd: Ground sample distance in metres.

    Raises:
        ValueError: If ``bands`` holds no band with a known wavelength.

    """

    band_index: torch.Tensor
    waves: torch.Tensor

    def __init__(self, bands: Sequence[str], clay: Mapping[str, Any] | None = None, gsd: float = CLAY_GSD_M):
        super().__init__()
        self.spectral_bands = tuple(b for b in bands if b in WAVELENGTHS_UM)
        if not self.spectral_bands:
            raise ValueError(f"no Sentinel-2 band among {list(bands)} for Clay")
        self.gsd = float(gsd)
        indices = band_indices(list(bands), self.spectral_bands)
        waves = [WAVELENGTHS_UM[b] for b in self.spectral_bands]
        self.register_buffer("band_index", torch.tensor(indices, dtype=torch.long), persistent=False)
        self.register_buffer("waves", torch.tensor(waves, dtype=torch.float32), persistent=False)
        self.encoder = ClayEncoder(clay_config_from(clay))

    @property
    def dim(self) -> int:
        """Token width ``D``."""
        return self.encoder.dim

    @property
    def patch_size(self) -> int:
        """Patch side ``P`` in pixels."""
        return self.encoder.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` (all input bands) -> Clay token map ``[B, D, H/P, W/P]``."""
        pixels = x.index_select(1, self.band_index)
        return self.encoder.token_map(pixels, self.waves, gsd=self.gsd)

    def load_pretrained(self, path: str | Path | None = None, cache_dir: str | Path | None = None) -> None:
        """Load Clay weights (a checkpoint file, or the official download when ``path`` is None).

        Raises:
            CheckpointError: Unreadable/unsafe file, offline download, or a shape mismatch
                with this branch's Clay configuration.

        """
        from pipeline.models.checkpoint import CheckpointError

        source = ClayEncoder.from_checkpoint(path) if path else ClayEncoder.from_pretrained(cache_dir)
        try:
            self.encoder.load_state_dict(source.state_dict(), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"Clay checkpoint {path or 'clay-v1.5'} does not fit this model's Clay "
                f"({self.encoder.config}): {str(exc).strip().splitlines()[-1].strip()}"
            ) from exc
