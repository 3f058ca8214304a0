"""Which failures are worth a retry: network and catalog I/O, not bad input."""

from __future__ import annotations

from typing import Any

from flows.usgs_feed import FeedUnreachableError
from pipeline.catalog import CatalogError

#: Exceptions that may go away on their own (an API down for a minute, a dropped connection).
TRANSIENT = (FeedUnreachableError, CatalogError, ConnectionError, TimeoutError, OSError)


def backoff(first_s: float, retries: int = 3) -> list[float]:
    """Exponential retry delays: ``first_s, 2 * first_s, 4 * first_s, ...``."""
    return [first_s * 2**k for k in range(retries)]


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient I/O errors."""
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(exc, TRANSIENT)
