"""Nested model selection on out-of-fold logits: calibration map and threshold chosen inside each fold.

Input: the arrays of :func:`pipeline.train.cv.run_cv` (``oof.npz``): every chip's *outer* logit
(from the model trained without its fold) and its *inner* logits (``inner[c, o]``: from the model
trained without its fold and fold ``o``).

For outer fold ``f``, :func:`nested` fits the calibration map on the inner logits ``inner[:, f]``
of ``f``'s training chips (out-of-fold logits from models that never saw ``f``), picks the
threshold with the best F1 of those calibrated inner probabilities, and applies both to the
outer logits of ``f``'s held chips. Pooling the held chips of every fold gives a table in which
nothing was chosen on the pixels it scores. With ``method="select"`` the calibration method too
is chosen inside each fold: the one whose map, cross-fitted over the inner folds, has the lowest
``ECE + max gap`` (:func:`choose_method`).

The shipped checkpoint's calibration (:func:`shipped`): the method whose nested row has the
lowest ``ECE + max gap``, fitted on all outer logits, and the threshold with the best F1 of those
calibrated outer probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pipeline.models.checkpoint import Calibration
from pipeline.train import calibration as cal
from pipeline.train.metrics import Scores

#: Thresholds scanned on calibrated probabilities.
OOF_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))

#: The lower regional base rate the label-shift correction is tested at (about 8x below the chips').
BASE_RATE_TEST = 0.005

Array = NDArray[Any]


def scores_at(prob: Array, labels: Array, thresholds: Sequence[float]) -> list[Scores]:
    """Pooled pixel scores of ``prob >= t`` at each threshold (float32 comparison, as in training)."""
    p = np.asarray(prob, np.float32).ravel()
    truth = np.asarray(labels).ravel() > 0.5
    pos, neg = np.sort(p[truth]), np.sort(p[~truth])
    t = np.asarray(thresholds, np.float32)
    tp = pos.size - np.searchsorted(pos, t, side="left")
    fp = neg.size - np.searchsorted(neg, t, side="left")
    return [
        Scores(float(th), int(a), int(b), int(pos.size - a), int(neg.size - b))
        for th, a, b in zip(thresholds, tp, fp, strict=True)
    ]


def best_threshold(prob: Array, labels: Array) -> Scores:
    """The threshold of :data:`OOF_THRESHOLDS` with the highest pooled F1 (ties: the lower one)."""
    return max(scores_at(prob, labels, OOF_THRESHOLDS), key=lambda s: (round(s.f1, 12), -s.threshold))


def apply(calibration: Calibration, logits: Array) -> Array:
    """Calibrated probabilities of ``logits`` (float64)."""
    return calibration.probabilities(torch.from_numpy(np.asarray(logits, np.float32))).double().numpy()


def criterion(prob: Array, labels: Array) -> float:
    """What a calibration method is chosen by: ``ECE + max gap`` (lower is better)."""
    return cal.ece(prob, labels) + cal.max_gap(prob, labels)


def cross_fitted(logits: Array, labels: Array, groups: Array, method: str) -> Array:
    """Probabilities where each group's logits are calibrated by a map fitted on the other groups."""
    prob = np.empty(logits.shape, np.float64)
    for g in np.unique(groups):
        mine = groups == g
        prob[mine] = apply(cal.fit_calibration(logits[~mine], labels[~mine], method), logits[mine])
    return prob


def choose_method(logits: Array, labels: Array, groups: Array) -> tuple[str, dict[str, float]]:
    """The method of :data:`~pipeline.train.calibration.METHODS` with the lowest cross-fitted criterion."""
    values = {m: criterion(cross_fitted(logits, labels, groups, m), labels) for m in cal.METHODS}
    return min(values, key=lambda m: values[m]), values


@dataclass(frozen=True)
class Nested:
    """Outcome of :func:`nested`: pooled held-chip probabilities and scores, what each fold chose."""

    prob: Array
    scores: Scores
    thresholds: tuple[float, ...]
    methods: tuple[str, ...]
    fold_f1: tuple[float, ...]

    def report(self, labels: Array) -> dict[str, Any]:
        """JSON-ready scores and calibration summary."""
        return (
            self.scores.as_dict()
            | cal.summary(self.prob, labels)
            | {
                "fold_thresholds": list(self.thresholds),
                "fold_methods": list(self.methods),
                "fold_f1": list(self.fold_f1),
                "reliability": asdict(cal.reliability(self.prob, labels)),
            }
        )


def nested(
    outer: Array,
    inner: Array,
    labels: Array,
    fold: Array,
    method: str | Sequence[str],
    also: Array | None = None,
) -> tuple[Nested, Nested | None]:
    """Calibrate and threshold each outer fold from its training chips' inner logits (module doc).

    Args:
        outer: ``[N, H, W]`` outer logits.
        inner: ``[N, k, H, W]`` inner logits (NaN on each chip's own fold).
        labels: ``[N, H, W]`` {0, 1}.
        fold: ``[N]`` fold of each chip.
        method: A calibration method, ``select`` (chosen per fold by :func:`choose_method`), or
            one method per fold (e.g. those another run selected).
        also: Other logits of the held chips (e.g. shifted the L2A way) scored with the same
            per-fold maps and thresholds.

    Returns:
        The result for ``outer``, and for ``also`` (None without it).
    """
    targets = [outer] if also is None else [outer, also]
    probs = [np.empty(t.shape, np.float64) for t in targets]
    counts = [np.zeros(4, np.int64) for _ in targets]
    f1s: list[list[float]] = [[] for _ in targets]
    thresholds: list[float] = []
    methods: list[str] = []
    for f in np.unique(fold):
        train, held = fold != f, fold == f
        z_in, y_in = inner[train, f], labels[train]
        chosen = method if isinstance(method, str) else method[int(f)]
        if chosen == "select":
            groups = np.broadcast_to(fold[train][:, None, None], z_in.shape)
            chosen, _ = choose_method(z_in, y_in, groups)
        fitted = cal.fit_calibration(z_in, y_in, chosen)
        threshold = best_threshold(apply(fitted, z_in), y_in).threshold
        for target, prob, count, f1 in zip(targets, probs, counts, f1s, strict=True):
            prob[held] = apply(fitted, target[held])
            s = scores_at(prob[held], labels[held], (threshold,))[0]
            count += (s.tp, s.fp, s.fn, s.tn)
            f1.append(s.f1)
        thresholds.append(threshold)
        methods.append(chosen)
    mean = round(float(np.mean(thresholds)), 4)  # the pooled row: each fold used its own
    results = [
        Nested(prob, Scores(mean, *(int(v) for v in count)), tuple(thresholds), tuple(methods), tuple(f1))
        for prob, count, f1 in zip(probs, counts, f1s, strict=True)
    ]
    return results[0], (results[1] if also is not None else None)


def repeat_folds(logits: Array, fold: Array) -> Array:
    """``logits`` as if they were every outer fold's inner logits: selection *cross-fitted*, not nested.

    With it, :func:`nested` chooses fold ``f``'s map and threshold on the other folds' outer
    logits, which come from models that saw ``f``'s chips (a second-order leak the nested
    selection does not have); kept to show the size of that leak.
    """
    k = int(fold.max()) + 1
    return np.repeat(logits[:, None], k, axis=1)


def ensemble(outer: Array, inner: Array) -> Array:
    """Mean logit of every model that never saw a chip: its outer model and its ``k - 1`` pair models.

    A proxy of a ``k``-model fold ensemble (the pair models saw ``k - 2`` folds, not ``k - 1``).
    """
    stacked = np.concatenate([outer[:, None], inner], axis=1)
    return np.nanmean(stacked, axis=1)


def shipped(
    outer: Array, labels: Array, methods: dict[str, dict[str, Any]]
) -> tuple[Calibration, Scores, dict[str, float]]:
    """The shipped calibration and threshold.

    The method is the one whose nested row (``methods``: each method's :func:`nested` report)
    has the lowest ``ECE + max gap``: fitted on logits of models trained on fewer chips and
    applied to a model trained on more, which is what shipping does (the map is fitted on the
    outer models' OOF logits and applied to the final model trained on every chip). It is then
    fitted on all outer logits, and the threshold is the best F1 of those calibrated probabilities.
    """
    values = {m: float(r["ece"] + r["max_gap"]) for m, r in methods.items()}
    method = min(values, key=lambda m: values[m])
    fitted = cal.fit_calibration(outer, labels, method, fitted_on="out-of-fold logits, nested 5-fold CV")
    return fitted, best_threshold(apply(fitted, outer), labels), values


def analyse(arrays: dict[str, Array]) -> dict[str, Any]:
    """The nested report: raw, each calibration method, the per-fold selection (plain, TTA, L2A).

    Keys: ``raw``; ``methods`` (each calibration method, nested); ``nested`` (method chosen per
    fold: the headline row); ``tta`` (the same on logits averaged over flips and turns);
    ``l2a_shifted`` (the held chips shifted the L2A way, maps and thresholds from plain inner
    logits); ``cross_fitted`` (selection on the other folds' outer logits, not nested);
    ``ensemble`` (:func:`ensemble`, selection cross-fitted); ``base_rate_test`` (the nested
    probabilities on pixels subsampled to :data:`BASE_RATE_TEST`, before and after correction);
    ``tta``, ``cross_fitted`` and ``ensemble`` use the methods the headline row chose per fold;
    ``calibration``, ``chosen_method``,
    ``threshold``, ``criterion`` (the shipped map);
    ``in_sample`` (the shipped map and threshold scored on the logits they were fitted on).
    """
    z, y, fold = arrays["logits"].astype(np.float64), arrays["labels"], arrays["fold"]
    screening = "inner" not in arrays  # outer models only: every selection cross-fitted, not nested
    inner = repeat_folds(z, fold) if screening else arrays["inner"].astype(np.float64)
    raw = 1.0 / (1.0 + np.exp(-z))
    report: dict[str, Any] = {
        "raw": cal.summary(raw, y) | {"at_0.5": scores_at(raw, y, (0.5,))[0].as_dict()},
        "methods": {m: nested(z, inner, y, fold, m)[0].report(y) for m in cal.METHODS},
    }
    plain, shifted = nested(z, inner, y, fold, "select", also=arrays.get("logits_l2a"))
    report["nested"] = plain.report(y)
    report["base_rate_test"] = cal.label_shift_check(plain.prob, y, float(np.mean(y)), BASE_RATE_TEST)
    if shifted is not None:
        report["l2a_shifted"] = shifted.report(y)
    if "logits_tta" in arrays:
        z_tta = arrays["logits_tta"].astype(np.float64)
        inner_tta = repeat_folds(z_tta, fold) if screening else arrays["inner_tta"].astype(np.float64)
        report["tta"] = nested(z_tta, inner_tta, y, fold, plain.methods)[0].report(y)
    report["cross_fitted"] = nested(z, repeat_folds(z, fold), y, fold, plain.methods)[0].report(y)
    if not screening:
        ens = ensemble(z, inner)
        report["ensemble"] = nested(ens, repeat_folds(ens, fold), y, fold, plain.methods)[0].report(y)
    calibration, locked, values = shipped(z, y, report["methods"])
    prob = apply(calibration, z)
    report |= {
        "calibration": asdict(calibration),
        "chosen_method": calibration.method,
        "criterion": values,
        "threshold": locked.threshold,
        "in_sample": cal.summary(prob, y) | locked.as_dict(),
    }
    return report
