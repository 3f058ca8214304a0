from __future__ import annotations

import pytest
import torch

from pipeline.train.losses import LossConfig, SegmentationLoss, lovasz_hinge_flat
from pipeline.train.metrics import ConfusionAccumulator, Scores, choose_threshold


def test_metrics_pool_all_pixels_of_a_split() -> None:
    # Chip A: 4 pixels, truth 1 1 0 0, probs .9 .2 .8 .1 -> TP 1, FP 1, FN 1, TN 1
    # Chip B: 4 pixels, truth 1 1 1 1, probs all .9     -> TP 4
    acc = ConfusionAccumulator((0.5,))
    acc.update(torch.tensor([[0.9, 0.2], [0.8, 0.1]]), torch.tensor([[1, 1], [0, 0]]))
    acc.update(torch.full((2, 2), 0.9), torch.ones(2, 2))
    s = acc.at(0.5)
    assert (s.tp, s.fp, s.fn, s.tn) == (5, 1, 1, 1)
    assert s.precision == pytest.approx(5 / 6)
    assert s.recall == pytest.approx(5 / 6)
    assert s.f1 == pytest.approx(10 / 12)  # pooled; the per-chip average would be (0.5 + 1) / 2 = 0.75
    assert s.iou == pytest.approx(5 / 7)


def test_thresholds_accumulated_together() -> None:
    acc = ConfusionAccumulator((0.3, 0.7))
    acc.update(torch.tensor([0.5, 0.8, 0.2]), torch.tensor([1, 1, 0]))
    assert acc.at(0.3).tp == 2 and acc.at(0.7).tp == 1 and acc.at(0.7).fn == 1
    with pytest.raises(KeyError):
        acc.at(0.5)


def test_empty_denominators_are_zero() -> None:
    s = Scores(0.5, tp=0, fp=0, fn=0, tn=10)
    assert (s.precision, s.recall, s.f1, s.iou) == (0.0, 0.0, 0.0, 0.0)


def test_choose_threshold_prefers_best_f1_then_closest_to_070() -> None:
    scores = [Scores(0.55, 5, 5, 0, 0), Scores(0.65, 6, 0, 2, 0), Scores(0.75, 6, 0, 2, 0)]
    assert choose_threshold(scores).threshold in (0.65, 0.75)
    assert choose_threshold([Scores(0.6, 1, 0, 0, 0), Scores(0.8, 1, 1, 0, 0)]).threshold == 0.6


def test_lovasz_zero_for_confident_correct_and_positive_otherwise() -> None:
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert lovasz_hinge_flat(torch.tensor([5.0, -5.0, 5.0, -5.0]), labels).item() == 0.0
    assert lovasz_hinge_flat(torch.tensor([-5.0, 5.0, 5.0, -5.0]), labels).item() > 0.0
    # empty masks are well defined (flat variant)
    assert torch.isfinite(lovasz_hinge_flat(torch.randn(16), torch.zeros(16)))


def test_combined_loss_weights() -> None:
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.8).float()
    only_bce = SegmentationLoss(LossConfig(bce_weight=1.0, lovasz_weight=0.0))(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(logits, target, pos_weight=torch.tensor(25.0))
    assert only_bce.item() == pytest.approx(expected.item())
    full = SegmentationLoss()(logits, target)  # the method's: Lovasz per image, batch mean
    per_image = (lovasz_hinge_flat(logits[0], target[0]) + lovasz_hinge_flat(logits[1], target[1])) / 2
    assert full.item() == pytest.approx(0.9 * expected.item() + 0.1 * per_image.item())
    pooled = SegmentationLoss(LossConfig(lovasz_per_image=False))(logits, target)
    flat = lovasz_hinge_flat(logits, target).item()
    assert pooled.item() == pytest.approx(0.9 * expected.item() + 0.1 * flat)
    assert pooled.item() != pytest.approx(full.item())
