"""The method's loss: ``0.9 * BCEWithLogits(pos_weight=25) + 0.1 * Lovasz hinge``.

The Lovasz hinge (Berman et al., 2018) is computed **per image and averaged over the batch**
(``per_image=True``), as in the authors' code: this is the method's loss. The *pooled* ("flat")
variant, which sorts the errors of all pixels of the batch together, is kept as an option
(``LossConfig(lovasz_per_image=False)``). For a chip without any landslide pixel the per-image
hinge degenerates to the largest error of that chip, as in the reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors (1-D float)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovasz hinge over all pixels of ``logits`` and ``labels`` (any equal shapes).

    Args:
        logits: Raw scores (positive = landslide).
        labels: Targets in {0, 1}.

    Returns:
        A scalar loss.
    """
    logits = logits.reshape(-1).float()
    labels = labels.reshape(-1).float()
    if logits.numel() == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, descending=True)
    grad = lovasz_grad(labels[perm])
    return torch.dot(F.relu(errors_sorted), grad)


def lovasz_hinge_per_image(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovasz hinge of each image of the batch (first axis), averaged over the batch.

    Args:
        logits: Raw scores ``[B, ...]``.
        labels: Targets in {0, 1}, same shape.

    Returns:
        A scalar loss.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    losses = [lovasz_hinge_flat(lg, lb) for lg, lb in zip(logits, labels, strict=True)]
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class LossConfig:
    """Weights of the combined loss (the method's defaults).

    Attributes:
        bce_weight: Weight of the binary cross-entropy.
        lovasz_weight: Weight of the Lovasz hinge.
        pos_weight: BCE weight of landslide pixels (inflates probabilities: calibrate afterwards).
        lovasz_per_image: Lovasz hinge per image averaged over the batch (the method's); False
            pools all pixels of the batch.
    """

    bce_weight: float = 0.9
    lovasz_weight: float = 0.1
    pos_weight: float = 25.0
    lovasz_per_image: bool = True


class SegmentationLoss(torch.nn.Module):
    """``bce_weight * BCEWithLogits(pos_weight) + lovasz_weight * Lovasz hinge`` (per image by default)."""

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("pos_weight", torch.tensor([config.pos_weight]), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits and {0, 1} targets of the same shape ``[B, 1, H, W]``."""
        logits = logits.float()
        pos_weight = self.pos_weight
        assert isinstance(pos_weight, torch.Tensor)  # a registered buffer
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
        hinge = lovasz_hinge_per_image if self.config.lovasz_per_image else lovasz_hinge_flat
        return self.config.bce_weight * bce + self.config.lovasz_weight * hinge(logits, target)
