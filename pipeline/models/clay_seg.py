"""Clay-only segmenter: Clay v1.5 as the primary encoder plus residual terrain fusion.

For a 128-px chip with patch 8 (``P = 8``, token grid 16 x 16)::

    Clay(S2 bands) -> tokens [B, D, 16, 16] -> Conv1x1(D -> 96) + BN + ReLU          x16
    terrain CNN on (slope, dem): 128 -> 64 -> 32 -> 16 px with 16, 32, 64, 96 channels
    bottleneck fusion      x16 = x16 + α0 · t16                       (96 ch, 16 x 16)
    decoder stage 1        up x2, DoubleConv(96 -> 64);  x32 = x32 + α1 · t32   (32 x 32)
    decoder stage 2        up x2, DoubleConv(64 -> 32)                          (64 x 64)
    decoder stage 3        up x2, DoubleConv(32 -> 16)                          (128 x 128)
    head                   Dropout2d(p), Conv1x1(16 -> 1)

``α0 = α1 = 0`` at initialisation, so training starts from the pure Clay decoder and learns how
much terrain to mix in. Without ``slope``/``dem`` among the bands there is no terrain path.
Upsampling is bilinear (``align_corners=False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.bands import TERRAIN_BANDS, band_indices
from pipeline.models.clay import clay_config
from pipeline.models.clay_branch import ClayBranch
from pipeline.models.unet import DoubleConv


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TerrainPyramid(nn.Module):
    """Small CNN on the terrain channels returning features at 1/2^k resolution, k = 1..3."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32, 64, 96)) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(in_channels, widths[0])
        self.stages = nn.ModuleList(_conv_bn_relu(widths[i - 1], widths[i], stride=2) for i in range(1, 4))

    def forward(self, terrain: torch.Tensor) -> list[torch.Tensor]:
        """``[B, T, H, W]`` -> features at ``H/2, H/4, H/8`` (shallow to deep)."""
        x = self.stem(terrain)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class ClaySegmenter(nn.Module):
    """Clay v1.5 primary encoder, terrain fusion, three-stage bilinear decoder -> 1 logit.

    Args:
        bands: Input channel names (model contract order); Clay sees the S2 bands, the terrain
            path ``slope`` and ``dem`` when present.
        clay: Clay shape (``None`` -> Clay v1.5 large; ``{"size": "tiny"}`` for tests).
        token_channels: Width after the 1x1 projection of Clay tokens (96).
        decoder_widths: Output widths of the three decoder stages.
        dropout: ``Dropout2d`` probability before the head.

    """

    terrain_index: torch.Tensor

    def __init__(
        self,
        bands: Sequence[str],
        clay: Mapping[str, Any] | None = None,
        token_channels: int = 96,
        decoder_widths: Sequence[int] = (64, 32, 16),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.bands = tuple(bands)
        self.clay = ClayBranch(self.bands, clay)
        if self.clay.patch_size != 8:
            raise ValueError(f"ClaySegmenter expects Clay patch size 8, got {self.clay.patch_size}")
        widths = [int(token_channels), *(int(w) for w in decoder_widths)]
        if len(widths) != 4:
            raise ValueError(f"decoder_widths must have 3 entries, got {list(decoder_widths)}")
        self.project = nn.Sequential(
            nn.Conv2d(self.clay.dim, widths[0], 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.terrain_bands = tuple(b for b in TERRAIN_BANDS if b in self.bands)
        self.terrain: TerrainPyramid | None = None
        if self.terrain_bands:
            self.register_buffer(
                "terrain_index", torch.tensor(band_indices(self.bands, self.terrain_bands)), persistent=False
            )
            self.terrain = TerrainPyramid(len(self.terrain_bands), (16, widths[2], widths[1], widths[0]))
            self.alpha_bottleneck = nn.Parameter(torch.zeros(1))
            self.alpha_decoder = nn.Parameter(torch.zeros(1))
        self.decoder = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(3))
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, H, W]`` for ``x [B, C, H, W]`` (H, W multiples of 8)."""
        features = self.project(self.clay(x))  # [B, 96, H/8, W/8]
        terrain = None
        if self.terrain is not None:
            terrain = self.terrain(x.index_select(1, self.terrain_index))  # H/2, H/4, H/8
            features = features + self.alpha_bottleneck * terrain[2]
        for stage, block in enumerate(self.decoder):
            features = block(F.interpolate(features, scale_factor=2.0, mode="bilinear", align_corners=False))
            if stage == 0 and terrain is not None:
                features = features + self.alpha_decoder * terrain[1]
        logits: torch.Tensor = self.head(self.dropout(features))
        return logits


def default_config(bands: Sequence[str]) -> dict[str, Any]:
    """Paper configuration: Clay v1.5 large, 96 token channels, decoder 64-32-16."""
    return {
        "bands": list(bands),
        "clay": clay_config("large").to_dict(),
        "token_channels": 96,
        "decoder_widths": [64, 32, 16],
        "dropout": 0.1,
    }
