"""The one exception type that reaches the user as a one-line message.

Anything a user can cause (bad arguments, no scenes, unreachable catalog, a bad checkpoint, an
existing output) raises :class:`UserError` or a subclass; ``landslide`` prints
``landslide: error: <message>`` and exits non-zero, never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix, reported as one line with exit status ``exit_code``."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
