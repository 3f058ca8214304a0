"""Fixtures for the flow tests: a Prefect test harness (ephemeral, offline), feeds over loopback.

Prefect's home, database and logs go to a temporary directory (set before Prefect is imported),
its telemetry is off and its logging quiet. The only thing stood in for is the internet: the
USGS feed is a file served by an ``http.server`` on 127.0.0.1 started here.
"""

from __future__ import annotations

import http.server
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from ..event.conftest import DATA as DATA
from ..event.conftest import DEMO_EVENT as DEMO_EVENT
from ..event.conftest import FEED_DEMO as FEED_DEMO
from ..event.conftest import FEED_NO_IMAGERY as FEED_NO_IMAGERY
from ..event.conftest import LATE_EVENT as LATE_EVENT
from ..event.conftest import TEST_RADIUS_KM as TEST_RADIUS_KM
from ..event.conftest import closed_port_url as closed_port_url

_PREFECT_HOME = tempfile.mkdtemp(prefix="landslide-prefect-")
os.environ.update({
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_PROFILES_PATH": str(Path(_PREFECT_HOME) / "profiles.toml"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
})  # fmt: skip
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """One ephemeral Prefect API (temporary SQLite database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves DATA; answers 503 under /down/; counts requests per path."""

    hits: ClassVar[dict[str, int]] = {}

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, directory=str(DATA), **kw)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path.startswith("/down/"):
            self.send_error(503, "Service Unavailable")
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def feed_server() -> Iterator[tuple[str, dict[str, int]]]:
    """Base URL of a loopback HTTP server over tests/event/data, and its request counts."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler.hits
    server.shutdown()
    server.server_close()
