"""Hybrid: a U-Net on all input bands with Clay v1.5 context injected at the bottleneck.

For a 128-px chip, U-Net widths (64, 128, 256, 512) and Clay-large (``D = 1024``, patch 8)::

    U-Net encoder(x, all C bands) -> bottleneck b [B, 512, 8, 8] and skips
    Clay(S2 bands) -> tokens [B, 1024, 16, 16]
        -> Conv1x1(1024 -> 512) + BN + ReLU -> bilinear resize to 8 x 8    -> c [B, 512, 8, 8]
    fused = (Conv3x3 + BN + ReLU)(1024 -> 512) -> (Conv3x3 + BN + ReLU)(512 -> 512) on [b; c]
    U-Net decoder(fused, skips) -> Dropout2d(p) -> Conv1x1 -> logits [B, 1, 128, 128]

The context width defaults to the U-Net's bottleneck width (``widths[-1]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.clay import clay_config
from pipeline.models.clay_branch import ClayBranch
from pipeline.models.unet import DoubleConv, UNet


class HybridUNetClay(nn.Module):
    """U-Net + Clay bottleneck context.

    Args:
        bands: Input channel names (model contract order); the U-Net sees all of them, Clay the
            S2 bands among them.
        widths: U-Net encoder widths; the bottleneck has ``widths[-1]`` channels.
        dropout: ``Dropout2d`` probability before the head.
        clay: Clay shape (``None`` -> Clay v1.5 large; ``{"size": "tiny"}`` for tests).
        context_channels: Width of the projected Clay context (default ``widths[-1]``).

    """

    def __init__(
        self,
        bands: Sequence[str],
        widths: Sequence[int] = (64, 128, 256, 512),
        dropout: float = 0.1,
        clay: Mapping[str, Any] | None = None,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.bands = tuple(bands)
        self.unet = UNet(len(self.bands), widths, dropout)
        self.clay = ClayBranch(self.bands, clay)
        bottleneck = self.unet.bottleneck_channels
        context = int(context_channels or bottleneck)
        self.context = nn.Sequential(
            nn.Conv2d(self.clay.dim, context, 1, bias=False), nn.BatchNorm2d(context), nn.ReLU(inplace=True)
        )
        self.fuse = DoubleConv(bottleneck + context, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, H, W]`` for ``x [B, C, H, W]`` (H, W multiples of 16)."""
        bottleneck, skips = self.unet.encode(x)
        context = self.context(self.clay(x))
        context = F.interpolate(context, size=bottleneck.shape[-2:], mode="bilinear", align_corners=False)
        return self.unet.decode(self.fuse(torch.cat([bottleneck, context], dim=1)), skips)


def default_config(bands: Sequence[str]) -> dict[str, Any]:
    """Paper configuration: U-Net 64-512 on all bands, Clay v1.5 large, context 512."""
    return {
        "bands": list(bands),
        "widths": [64, 128, 256, 512],
        "dropout": 0.1,
        "clay": clay_config("large").to_dict(),
        "context_channels": 512,
    }
