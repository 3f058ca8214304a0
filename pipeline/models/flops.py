"""Parameter counts and FLOPs per chip, measured on the meta device (no memory, no compute).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one forward pass of a
``[1, C, S, S]`` chip, with a multiply-add counted as 2 FLOPs (matmul ``[m, k] x [k, n]`` =
``2 m k n``; convolution = ``2 · out_elements · C_in · k_h · k_w / groups``; attention
= its two matmuls). Only matmuls, convolutions and attention are counted; element-wise work
(norms, activations, interpolation) is not. Building on ``torch.device("meta")`` allocates no
weights, so even Clay-large (311 M parameters) is counted in a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.bands import SWEEP_BANDS
from pipeline.models.registry import build_model

#: Chip side (pixels) of Landslide4Sense and of the sweep windows.
CHIP_SIZE = 128


@dataclass(frozen=True)
class ModelCost:
    """Size and compute of a model configuration.

    Attributes:
        name: Registry name.
        parameters: Number of parameters.
        trainable: Parameters with ``requires_grad``.
        gflop_per_chip: Forward GFLOP (multiply-add = 2) for one ``chip_size`` chip.
        chip_size: Chip side in pixels.

    """

    name: str
    parameters: int
    trainable: int
    gflop_per_chip: float
    chip_size: int = CHIP_SIZE


def measure(name: str, config: dict[str, Any], bands: Sequence[str] = SWEEP_BANDS,
            chip_size: int = CHIP_SIZE) -> ModelCost:  # fmt: skip
    """Count parameters and forward FLOPs of ``build_model(name, config)`` on the meta device.

    Args:
        name: Registry name.
        config: Constructor configuration.
        bands: Input channels (only their number matters).
        chip_size: Chip side in pixels.

    Returns:
        The :class:`ModelCost`.

    """
    with torch.device("meta"):
        model = build_model(name, config).eval()
        x = torch.zeros(1, len(bands), chip_size, chip_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return ModelCost(
        name=name,
        parameters=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        gflop_per_chip=counter.get_total_flops() / 1e9,
        chip_size=chip_size,
    )
