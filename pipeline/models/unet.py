"""The U-Net baseline: a 4-level encoder-decoder with skip connections.

Layout for ``widths=(64, 128, 256, 512)`` on a 128-px chip (the classic "bilinear" U-Net of
Ronneberger et al. as popularised by milesial/Pytorch-UNet)::

    stem      DoubleConv(C   -> 64)            128 x 128   skip 0
    down 1    MaxPool, DoubleConv(64  -> 128)   64 x 64    skip 1
    down 2    MaxPool, DoubleConv(128 -> 256)   32 x 32    skip 2
    down 3    MaxPool, DoubleConv(256 -> 512)   16 x 16    skip 3
    bottleneck MaxPool, DoubleConv(512 -> 512)   8 x 8
    up 3      bilinear x2, cat skip 3 (512+512) -> DoubleConv(1024 -> 512 -> 256)  16 x 16
    up 2      bilinear x2, cat skip 2 (256+256) -> DoubleConv(512 -> 256 -> 128)  32 x 32
    up 1      bilinear x2, cat skip 1 (128+128) -> DoubleConv(256 -> 128 -> 64)   64 x 64
    up 0      bilinear x2, cat skip 0 (64+64)   -> DoubleConv(128 -> 64 -> 64)   128 x 128
    head      Dropout2d(p), Conv1x1(64 -> 1)                          128 x 128

So there are four downsamplings (128 -> 8, a factor 16) and the bottleneck has ``widths[-1]``
channels; the input height and width must be multiples of 16. ``DoubleConv(a -> m -> b)`` is
``Conv3x3(a -> m) -> BN -> ReLU -> Conv3x3(m -> b) -> BN -> ReLU``; decoder blocks use
``m = a / 2`` as in milesial's bilinear U-Net. At 13 bands and 128 px this is 17.3 M parameters
and about 20 GFLOP (multiply-adds counted as 2) per chip. The encoder and decoder are exposed separately
(:meth:`UNet.encode`, :meth:`UNet.decode`) so the hybrid model can inject context at the
bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    """``(Conv3x3 -> BatchNorm -> ReLU) x 2``; the convolutions have no bias (BN follows).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        mid_channels: Channels between the two convolutions (default ``out_channels``).

    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid = out_channels if mid_channels is None else mid_channels
        super().__init__(
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Bilinear x2 upsampling, concatenation with the skip, then a :class:`DoubleConv`."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        total = in_channels + skip_channels
        self.conv = DoubleConv(total, out_channels, mid_channels=max(total // 2, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` to the skip's size, concatenate on channels, convolve."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        out: torch.Tensor = self.conv(torch.cat([x, skip], dim=1))
        return out


class UNet(nn.Module):
    """U-Net with ``len(widths)`` encoder stages plus a bottleneck, returning one logit per pixel.

    Args:
        in_channels: Number of input bands ``C``.
        widths: Channels of the encoder stages; the bottleneck has ``widths[-1]`` channels.
        dropout: ``Dropout2d`` probability before the 1x1 head.

    """

    def __init__(
        self, in_channels: int, widths: Sequence[int] = (64, 128, 256, 512), dropout: float = 0.1
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if in_channels < 1 or len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"bad U-Net shape: in_channels={in_channels}, widths={widths}")
        self.in_channels = int(in_channels)
        self.widths = widths
        self.stem = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(DoubleConv(widths[i - 1], widths[i]) for i in range(1, len(widths)))
        self.bottleneck = DoubleConv(widths[-1], widths[-1])
        ups = []
        channels = widths[-1]
        for level in reversed(range(len(widths))):
            out = widths[level - 1] if level > 0 else widths[0]
            ups.append(UpBlock(channels, widths[level], out))
            channels = out
        self.ups = nn.ModuleList(ups)
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    @property
    def bottleneck_channels(self) -> int:
        """Channels of the bottleneck feature map (``widths[-1]``)."""
        return self.widths[-1]

    @property
    def downsampling(self) -> int:
        """Total downsampling factor from input to bottleneck (``2 ** len(widths)``)."""
        return int(2 ** len(self.widths))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the encoder.

        Args:
            x: ``[B, C, H, W]`` with H, W multiples of :attr:`downsampling`.

        Returns:
            ``(bottleneck [B, widths[-1], H/16, W/16], skips)`` with skips shallow to deep.

        """
        factor = self.downsampling
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"U-Net input {tuple(x.shape[-2:])} is not a multiple of {factor}")
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        return self.bottleneck(F.max_pool2d(skips[-1], 2)), skips

    def decode(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Run the decoder and head: ``[B, widths[-1], h, w]`` -> logits ``[B, 1, H, W]``."""
        x = bottleneck
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = up(x, skip)
        logits: torch.Tensor = self.head(self.dropout(x))
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, H, W]`` for input ``x: float32 [B, C, H, W]``."""
        bottleneck, skips = self.encode(x)
        return self.decode(bottleneck, skips)
