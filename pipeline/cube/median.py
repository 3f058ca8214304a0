"""The per-pixel median over a few time slices in uint16, without branches or masked copies.

:func:`pipeline.cube.composite_block` runs :func:`median_strip` on strips of rows. Everything is
uint16 arithmetic on whole strips (numpy's ``np.where`` and masked ``copyto`` follow a random mask
pixel by pixel and were 20 to 60 times slower than a ``minimum`` on cloud masks):

* an observation that does not qualify (not clear, or DN 0) becomes 65535 by OR-ing it with a
  mask word (0xFFFF where it does not qualify), so it sorts after every harmonised DN;
* a sorting network orders the slices, keeping only the compare-exchanges whose outputs the
  median reads (ranks ``0 .. T // 2``);
* with ``c`` qualifying observations the median is ``(s[(c - 1) // 2] + s[c // 2]) / 2``; as the
  sorted values rise with the rank, ``s[m(c)]`` is ``max over k <= T // 2 of (s[k] AND
  [c >= g(k)])`` for the right thresholds ``g``, a mask word per threshold (shared by every band
  of a block through :class:`ClearCounts`);
* a genuine 65535 ties with the filler and is still picked correctly: the ranks below the count
  are qualifying values.

The sum of the two middle values is exact in float32 and halving is exact, so
``sum / (2 * divisor)`` is ``median / divisor`` rounded once, bit for bit bottleneck's
``nanmedian`` divided by ``divisor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np

#: Largest number of time slices the composite sorts with a sorting network; more use bottleneck.
NETWORK_MAX_T: Final[int] = 16
#: Pixels per strip of the multi-date median (its uint16 temporaries stay in the CPU caches; the
#: result does not depend on it).
STRIP_PIXELS: Final[int] = 65536
#: Sorts after every harmonised DN: stands for "no observation" in the sorting network.
NO_OBSERVATION: Final = np.uint16(0xFFFF)

#: Optimal sorting networks (compare-exchange pairs) for 2, 3 and 4 inputs.
_NETWORKS: dict[int, tuple[tuple[int, int], ...]] = {
    2: ((0, 1),),
    3: ((0, 1), (1, 2), (0, 1)),
    4: ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2)),
}


@cache
def median_network(t: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Compare-exchanges ``(i, j, keep_min, keep_max)`` that sort ``t`` inputs as far as the median reads.

    Optimal networks up to 4 inputs, odd-even transposition beyond. The median reads ranks
    ``0 .. t // 2``; walking the network backwards, a compare-exchange keeps its minimum (into
    ``i``) or maximum (into ``j``) only where that position is read later, and is dropped when
    neither is.
    """
    pairs = _NETWORKS.get(t) or tuple((i, i + 1) for rnd in range(t) for i in range(rnd % 2, t - 1, 2))
    live = set(range(t // 2 + 1))
    ops: list[tuple[int, int, bool, bool]] = []
    for i, j in reversed(pairs):
        keep_min, keep_max = i in live, j in live
        if keep_min or keep_max:
            ops.append((i, j, keep_min, keep_max))
            live |= {i, j}
    return tuple(reversed(ops))


def _mask_words(count: np.ndarray, t: int, out: np.ndarray | None = None) -> np.ndarray:
    """``words[j - 2]`` for ``j = 2 .. t``: uint16 0xFFFF where ``count >= j``, else 0.

    ``(j - 1) - count`` is negative exactly where ``count >= j`` (counts are below 2^15), and an
    arithmetic shift by 15 turns its sign into 0 or 0xFFFF.
    """
    words = np.empty((t - 1, *count.shape), dtype=np.uint16) if out is None else out
    signed, c = words.view(np.int16), count.view(np.int16)
    for j in range(2, t + 1):
        np.subtract(np.int16(j - 1), c, out=signed[j - 2])
        np.right_shift(signed[j - 2], 15, out=signed[j - 2])
    return words


@dataclass(frozen=True)
class ClearCounts:
    """The clear mask as the median reads it: computed once per block, shared by all its bands.

    Attributes:
        blank: ``(T, h, w)`` uint16, 0xFFFF where the slice is not clear, 0 where it is.
        count: ``(h, w)`` uint16 clear slices per pixel.
        at_least: ``(T - 1, h, w)`` uint16, ``at_least[j - 2]`` 0xFFFF where ``count >= j``, else 0.
    """

    blank: np.ndarray
    count: np.ndarray
    at_least: np.ndarray

    @classmethod
    def of(cls, clear: np.ndarray) -> ClearCounts:
        """From a ``(T, h, w)`` boolean clear mask (``2 <= T <= NETWORK_MAX_T``)."""
        t = clear.shape[0]
        blank = clear.astype(np.uint16)
        np.subtract(blank, np.uint16(1), out=blank)  # clear 1 -> 0, not clear 0 -> 0xFFFF
        count = clear.view(np.uint8).sum(axis=0, dtype=np.uint16)
        return cls(blank, count, _mask_words(count, t))


class _Workspace:
    """Strip-sized buffers, reused by every strip of a block (fresh large arrays cost page faults)."""

    def __init__(self, t: int, rows: int, w: int, offsets: Sequence[int]) -> None:
        self.values = [np.empty((rows, w), dtype=np.uint16) for _ in range(t + 1)]
        self.blank = np.empty((t, rows, w), dtype=np.uint16)
        self.count = np.empty((rows, w), dtype=np.uint16)
        self.words = np.empty((t - 1, rows, w), dtype=np.uint16)
        self.lo = np.empty((rows, w), dtype=np.uint16)
        self.hi = np.empty((rows, w), dtype=np.uint16)
        self.half = np.empty((rows, w), dtype=np.float32)
        self.ones = np.ones((rows, w), dtype=np.uint16)
        # numpy's minimum and maximum with a scalar are ~20x slower than with an array
        self.floors = {o: np.full((rows, w), o, dtype=np.uint16) for o in set(offsets) if o}


def median_block(
    dn: np.ndarray,
    counts: ClearCounts,
    offsets: Sequence[int],
    out: np.ndarray,
    divisor: float,
    valid: np.ndarray | None = None,
    *,
    nan: bool = True,
    strip_pixels: int = STRIP_PIXELS,
) -> None:
    """``out = median{ max(dn[t] - offsets[t], 0) : clear[t] and dn[t] != 0 } / divisor``, NaN where none.

    Computed on strips of :data:`STRIP_PIXELS` pixels (the result does not depend on them).

    Args:
        dn: ``(T, h, w)`` uint16 digital numbers, ``2 <= T <= NETWORK_MAX_T``.
        counts: :class:`ClearCounts` of the block's clear mask.
        offsets: DN offset of each slice.
        out: ``(h, w)`` float32 destination.
        divisor: The median is divided by it (rounded once).
        valid: Optional ``(h, w)`` bool, ANDed in place with "some observation qualifies".
        nan: Write NaN where no observation qualifies (False leaves some finite value there, for a
            caller who masks those pixels anyway).
        strip_pixels: Pixels per strip.
    """
    t, h, w = dn.shape
    step = max(1, min(h, strip_pixels // max(w, 1)))
    ws = _Workspace(t, step, w, offsets)
    scale = np.float32(2) * np.float32(divisor)
    for r in range(0, h, step):
        rs = slice(r, min(r + step, h))
        strip_valid = None if valid is None else valid[rs]
        _median_strip(dn[:, rs], counts, rs, offsets, out[rs], scale, ws, strip_valid, nan)


def _median_strip(
    dn: np.ndarray, counts: ClearCounts, rs: slice, offsets: Sequence[int], out: np.ndarray,
    scale: np.float32, ws: _Workspace, valid: np.ndarray | None, nan: bool,
) -> None:  # fmt: skip
    """One strip of :func:`median_block` (rows ``rs`` of the block), ``out = (lo + hi) / scale``."""
    t, n = dn.shape[0], dn.shape[1]
    with_zeros = [i for i in range(t) if int(dn[i].min()) == 0]
    blank: list[np.ndarray] = [counts.blank[i, rs] for i in range(t)]
    if with_zeros:  # no-data DNs: this band's counts differ from the clear mask's
        ones = ws.ones[:n]
        for i in with_zeros:
            b = ws.blank[i, :n]
            np.minimum(dn[i], ones, out=b)
            np.subtract(b, np.uint16(1), out=b)  # DN 0 -> 0xFFFF, else 0
            np.bitwise_or(b, blank[i], out=b)
            blank[i] = b
        count = ws.count[:n]
        np.add(blank[0], blank[1], out=count)  # each slice adds 0 or 0xFFFF (-1): minus the misses
        for i in range(2, t):
            np.add(count, blank[i], out=count)
        np.add(count, np.uint16(t), out=count)
        at_least = _mask_words(count, t, ws.words[:, :n])
    else:
        count, at_least = counts.count[rs], counts.at_least[:, rs]
    values = [v[:n] for v in ws.values]
    spare = values.pop()
    for i in range(t):
        if offsets[i]:  # max(dn - o, 0) == max(dn, o) - o, exact in uint16
            np.maximum(dn[i], ws.floors[offsets[i]][:n], out=values[i])
            np.subtract(values[i], np.uint16(offsets[i]), out=values[i])
            np.bitwise_or(values[i], blank[i], out=values[i])
        else:
            np.bitwise_or(dn[i], blank[i], out=values[i])
    for i, j, keep_min, keep_max in median_network(t):
        if keep_min and keep_max:
            np.minimum(values[i], values[j], out=spare)
            np.maximum(values[i], values[j], out=values[j])
            values[i], spare = spare, values[i]
        elif keep_min:
            np.minimum(values[i], values[j], out=values[i])
        else:
            np.maximum(values[i], values[j], out=values[j])
    # s[(c - 1) // 2] is s[k] for the largest k with c >= 2k + 1, s[c // 2] the largest with c >= 2k;
    # the sorted values rise with k, so each is a running maximum of s[k] AND [c >= threshold].
    lo, hi = values[0], values[0]
    for k in range(1, t // 2 + 1):
        if 2 * k + 1 <= t:
            np.bitwise_and(values[k], at_least[2 * k - 1], out=spare)
            lo = np.maximum(lo, spare, out=ws.lo[:n])
        np.bitwise_and(values[k], at_least[2 * k - 2], out=spare)
        hi = np.maximum(hi, spare, out=ws.hi[:n])
    half = ws.half[:n]
    np.copyto(out, lo)  # uint16 -> float32, exact
    np.copyto(half, hi)
    np.add(out, half, out=out)  # below 2^17: exact
    np.divide(out, scale, out=out)
    if nan:
        none = count == 0
        if none.any():
            np.add(out, _nan_where(none), out=out)
    if valid is not None:
        valid &= count != 0


def _nan_where(mask: np.ndarray) -> np.ndarray:
    """float32 NaN where ``mask``, 0 elsewhere (added to a finite value: NaN or the value itself)."""
    bits = mask.astype(np.uint32)
    np.multiply(bits, np.uint32(0x7FC00000), out=bits)
    return bits.view(np.float32)
