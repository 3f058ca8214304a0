"""Prefect's retry condition: retry only the transient I/O errors of :data:`pipeline.event.usgs.TRANSIENT`."""

from __future__ import annotations

from typing import Any

from pipeline.event.usgs import TRANSIENT
from pipeline.event.usgs import backoff as backoff


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient I/O errors."""
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(exc, TRANSIENT)
