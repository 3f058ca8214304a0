"""Fixtures of the event tests: the feed fixtures and a URL on which nothing listens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
FEED_DEMO = DATA / "feed_demo.geojson"
FEED_NO_IMAGERY = DATA / "feed_no_imagery.geojson"
DEMO_EVENT = "us2000demo"
LATE_EVENT = "us2000late"
#: A disc small enough to lie inside the 6.4 x 3.8 km demo scene (a 384 x 384 px sweep).
TEST_RADIUS_KM = 1.5


@pytest.fixture()
def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/4.5_day.geojson"
