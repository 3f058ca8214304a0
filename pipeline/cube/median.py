"""The per-pixel median over a few time slices in uint16, without branches or masked copies.

:func:`pipeline.cube.composite_block` runs :func:`median_block`, a compiled loop a row at a time
(:func:`pipeline.cube.kernels.median_rows`; the row's ``T`` uint16 buffers stay in the L1 cache):

* an observation that does not qualify (not clear, or DN 0) becomes 65535 by OR-ing it with a
  mask word (0xFFFF where it does not qualify, from the clear mask and the DN in the same pass),
  so it sorts after every harmonised DN;
* a sorting network orders the slices, keeping only the compare-exchanges whose outputs the
  median reads (ranks ``0 .. T // 2``), each a branch-free min/max along the row;
* with ``c`` qualifying observations (counted in the same pass) the median is
  ``(s[(c - 1) // 2] + s[c // 2]) / 2``, each picked by a running maximum over the ranks (the
  loop is memory-bound: it reads the DNs and the clear mask once);
* a genuine 65535 ties with the filler and is still picked correctly: the ranks below the count
  are qualifying values.

The sum of the two middle values is exact in float32 and halving is exact, so
``sum / (2 * divisor)`` is ``median / divisor`` rounded once, bit for bit bottleneck's
``nanmedian`` divided by ``divisor``. (It replaced numpy passes over strips of rows with the same
arithmetic, whose no-data path, taken by every strip with a DN 0, a swath edge for instance,
recounted each band's observations.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Final

import numpy as np

from pipeline.cube import kernels

#: Largest number of time slices the composite sorts with a sorting network; more use bottleneck.
NETWORK_MAX_T: Final[int] = 16

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


@cache
def _ops(t: int) -> np.ndarray:
    """:func:`median_network` as an ``(n, 4)`` int64 array for the compiled loop."""
    rows = [(i, j, int(a), int(b)) for i, j, a, b in median_network(t)]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def median_block(
    dn: np.ndarray,
    clear: np.ndarray,
    offsets: Sequence[int],
    out: np.ndarray,
    divisor: float,
    valid: np.ndarray | None = None,
    *,
    nan: bool = True,
) -> None:
    """``out = median{ max(dn[t] - offsets[t], 0) : clear[t] and dn[t] != 0 } / divisor``, NaN where none.

    A compiled loop a row at a time (:func:`pipeline.cube.kernels.median_rows`).

    Args:
        dn: ``(T, h, w)`` uint16 digital numbers, ``2 <= T <= NETWORK_MAX_T``.
        clear: ``(T, h, w)`` bool clear mask.
        offsets: DN offset of each slice.
        out: ``(h, w)`` float32 destination.
        divisor: The median is divided by it (rounded once).
        valid: Optional ``(h, w)`` bool, ANDed in place with "some observation qualifies".
        nan: Write NaN where no observation qualifies (False leaves some finite value there, for a
            caller who masks those pixels anyway).
    """
    t = dn.shape[0]
    scale = np.float32(2) * np.float32(divisor)
    track = valid is not None
    mask = valid if valid is not None else np.ones((1, 1), dtype=np.bool_)
    kernels.median_rows(
        dn, clear, np.asarray(offsets, dtype=np.uint16), _ops(t), out, scale, mask, track, nan
    )
