"""The watch's command line offline: one line, at once, no Prefect; --help tells how to use files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.watch_cli import PREFECT_DEFAULTS, prefect_defaults

ROOT = Path(__file__).resolve().parents[2]


def _watch(args: list[str], home: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "flows.earthquake_watch", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    return r, time.perf_counter() - t0


def test_an_unresolvable_feed_host_fails_at_once_with_one_line(tmp_path: Path) -> None:
    """What README's command does with no network: no retries, no Prefect server, one line."""
    feed = "https://earthquake.invalid/earthquakes/feed/v1.0/summary/4.5_day.geojson"
    r, wall = _watch(["--feed", feed, "--out", str(tmp_path / "out"), "--once"], tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(
        "earthquake-watch: error: cannot read the earthquake feed https://earthquake.invalid"
    )
    assert "host earthquake.invalid not found" in r.stderr
    assert wall < 30  # was 10 + 20 + 40 s of retries, then a Prefect server's shutdown
    assert not (tmp_path / ".prefect").exists()  # Prefect never started
    assert not (tmp_path / "out" / "events.json").exists()


def test_a_missing_feed_file_fails_at_once_with_one_line(tmp_path: Path) -> None:
    r, wall = _watch(
        ["--feed", str(tmp_path / "nope.geojson"), "--out", str(tmp_path / "o"), "--once"], tmp_path
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr and wall < 30


def test_an_expected_failure_inside_the_flow_is_one_line(tmp_path: Path) -> None:
    """Past the pre-flight (a temporary Prefect server runs the flow): still one line, no traceback."""
    (tmp_path / "a-file").write_text("")
    feed, catalog = (
        ROOT / "tests/event/data/feed_demo.geojson",
        ROOT / "pipeline/demo/data/scene/catalog.json",
    )
    r, _ = _watch(
        ["--feed", str(feed), "--catalog", str(catalog), "--no-shakemap", "--once",
         "--out", str(tmp_path / "a-file" / "out")], tmp_path,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"earthquake-watch: error: [Errno 20] Not a directory: '{tmp_path}/a-file/out'"
    ]


def test_help_says_how_to_run_on_local_feed_and_detail_files(tmp_path: Path) -> None:
    r, wall = _watch(["--help"], tmp_path)
    assert r.returncode == 0 and wall < 30 and not (tmp_path / ".prefect").exists()
    text = " ".join(r.stdout.split())
    assert "--feed FILE reads a USGS GeoJSON summary feed saved to disk" in text
    assert "properties.detail may be the path of a ComCat detail document" in text
    assert (
        "tests/event/data/feed_demo.geojson" in text
        and (ROOT / "tests/event/data/feed_demo.geojson").is_file()
    )


def test_prefect_telemetry_is_off_unless_the_operator_turned_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in PREFECT_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")  # the operator's choice wins
    prefect_defaults()
    assert os.environ["DO_NOT_TRACK"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert PREFECT_DEFAULTS["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
