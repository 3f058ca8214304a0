"""One rule for every test that needs a browser: skip without one, except in CI, where it fails."""

from __future__ import annotations

import os

import pytest


def need_chromium() -> None:
    """Skip the calling test when Chromium (or ``websockets``) is missing; fail instead under ``$CI``.

    ``.ci/run`` sets ``CI=1`` and ``make test`` installs Debian's ``chromium``, so a missing browser
    there is an error in the set-up, never a silently skipped test.
    """
    from pipeline.products.webmap.browser import find_chromium

    missing = "no Chromium" if find_chromium() is None else None
    try:
        import websockets  # noqa: F401
    except ImportError:
        missing = "no websockets package"
    if missing is None:
        return
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{missing} in CI (`make test` installs Debian's chromium when run as root)")
    pytest.skip(f"{missing}: install Debian's chromium (apt-get install chromium) to run the browser tests")
