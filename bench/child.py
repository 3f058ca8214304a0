"""Run one bench measurement in a fresh child process and keep only its numbers.

A model timed in the bench process stays in that process's resident set after it is deleted
(weights, frozen graphs and what tracing freed are scattered over the C heap; ``malloc_trim``
gives back only whole free pages). The hybrid's 1.35 GB of weights were thus still counted,
as part of the client, in the peak memory of the sweep that followed. A measurement run by
:func:`in_child` builds its model in a spawned process that exits before the next phase: the
bench process receives the (picklable) result and nothing else.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def in_child(fn: Callable[..., T], *args: Any, torch_threads: int | None = None) -> T:
    """``fn(*args)`` in a fresh spawned process; its result (pickled) or its exception.

    Args:
        fn: A module-level function (spawn imports it by name).
        *args: Its arguments (pickled).
        torch_threads: Intra-op threads of torch in the child (None: torch's default).
    """
    ctx = multiprocessing.get_context("spawn")  # not fork: a forked child shares the parent's heap
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_call, fn, args, torch_threads).result()


def _call(fn: Callable[..., T], args: tuple[Any, ...], torch_threads: int | None) -> T:
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    return fn(*args)
