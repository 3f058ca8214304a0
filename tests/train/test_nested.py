"""Nested selection: each fold's calibration map and threshold come from its training chips only."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.train import nested as N

K = 5


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """10 chips of 24 x 24 px in 5 folds; logits informative, labels drawn from them."""
    rng = np.random.default_rng(seed)
    n = 2 * K
    fold = np.repeat(np.arange(K), 2)
    truth = rng.normal(-2.5, 2.0, (n, 24, 24))
    labels = (rng.random(truth.shape) < 1 / (1 + np.exp(-truth))).astype(np.uint8)
    outer = 1.5 * truth + 2.0 + rng.normal(0, 0.5, truth.shape)
    inner = np.full((n, K, 24, 24), np.nan)
    for c in range(n):
        for o in range(K):
            if o != fold[c]:
                inner[c, o] = 1.2 * truth[c] + 1.0 + rng.normal(0, 0.7, truth[c].shape)
    return {"logits": outer, "inner": inner, "labels": labels, "fold": fold}


@pytest.mark.parametrize("method", ["platt", "select"])
def test_a_folds_choices_ignore_its_own_chips(method: str) -> None:
    a = _arrays()
    base, _ = N.nested(a["logits"], a["inner"], a["labels"], a["fold"], method)
    held = a["fold"] == 2
    # change everything about fold 2's own chips: their outer logits, labels and inner logits
    changed = {k: v.copy() for k, v in a.items()}
    changed["logits"][held] = -changed["logits"][held]
    changed["labels"][held] = 1 - changed["labels"][held]
    changed["inner"][held] = 5.0
    again, _ = N.nested(changed["logits"], changed["inner"], changed["labels"], changed["fold"], method)
    # fold 2's threshold and method rest on the other chips' inner logits for outer fold 2
    assert again.thresholds[2] == base.thresholds[2] and again.methods[2] == base.methods[2]
    # ... and those inner logits do decide it: change them and fold 2's threshold moves
    moved = {k: v.copy() for k, v in a.items()}
    noise = np.random.default_rng(9).normal(0.0, 1.0, moved["inner"][~held, 2].shape)
    moved["inner"][~held, 2] = noise  # uninformative: the calibrated inner probabilities flatten
    third, _ = N.nested(moved["logits"], moved["inner"], moved["labels"], moved["fold"], method)
    assert third.thresholds[2] != base.thresholds[2]


def test_pooled_counts_add_up_over_the_held_folds() -> None:
    a = _arrays(1)
    result, also = N.nested(a["logits"], a["inner"], a["labels"], a["fold"], "beta", also=a["logits"] + 1.0)
    s = result.scores
    assert s.tp + s.fp + s.fn + s.tn == a["labels"].size
    assert s.tp + s.fn == int(a["labels"].sum())
    assert also is not None and also.thresholds == result.thresholds  # same maps, other logits
    assert len(result.fold_f1) == K and result.prob.shape == a["labels"].shape


def test_the_ensemble_never_uses_a_chips_own_fold() -> None:
    a = _arrays(2)
    ens = N.ensemble(a["logits"], a["inner"])
    c = 3
    expected = np.mean([a["logits"][c], *(a["inner"][c, o] for o in range(K) if o != a["fold"][c])], axis=0)
    np.testing.assert_allclose(ens[c], expected)


def test_cross_fitted_selection_uses_the_other_folds_outer_logits() -> None:
    a = _arrays(3)
    same = N.repeat_folds(a["logits"], a["fold"])
    assert same.shape == (2 * K, K, 24, 24)
    result, _ = N.nested(a["logits"], same, a["labels"], a["fold"], "platt")
    assert 0.0 < result.scores.f1 <= 1.0


def test_scores_at_matches_a_direct_count() -> None:
    rng = np.random.default_rng(4)
    prob, labels = rng.random(5000), rng.random(5000) < 0.3
    for s in N.scores_at(prob, labels, (0.1, 0.5, 0.9)):
        pred = prob.astype(np.float32) >= np.float32(s.threshold)
        assert (s.tp, s.fp, s.fn) == (int((pred & labels).sum()), int((pred & ~labels).sum()),
                                      int((~pred & labels).sum()))  # fmt: skip
