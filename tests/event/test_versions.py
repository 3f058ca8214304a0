"""A version that keeps failing: retried a bounded number of times, then given up and recorded.

Real parts only: the demo catalog, the Keefer plan on the real land mask, the events file. The
failure is a real one (``--block 100``, refused by the sweep's configuration), so no cluster starts.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from pipeline.demo.scene import DEMO_CATALOG
from pipeline.errors import UserError
from pipeline.event.config import MAX_ATTEMPTS, PlanOptions, VersionOptions, WatchOptions
from pipeline.event.plan import choose_tiles, plan_tiles
from pipeline.event.state import (
    Building,
    EventBusyError,
    EventRecord,
    EventState,
    FailedVersion,
    load_events,
    record_failure,
    version_errors,
)
from pipeline.event.versions import advance_quake

from .conftest import DEMO_EVENT, TEST_RADIUS_KM

LOG = logging.getLogger("test")
NOW = dt.datetime(2018, 9, 15, tzinfo=dt.UTC)
VOPTS = VersionOptions(plan=PlanOptions(use_shakemap=False, max_radius_km=TEST_RADIUS_KM))


def _quake() -> EventRecord:
    return EventRecord(
        id=DEMO_EVENT, kind="earthquake", status="pending", bbox=[0, 0, 1, 1],
        event_time="2018-09-06T18:07:59+00:00", first_seen="x", updated="x", magnitude=6.6,
        lon=141.968, lat=42.782,
    )  # fmt: skip


def _opts(out: Path, block: int) -> WatchOptions:
    return WatchOptions(out_dir=str(out), catalog=str(DEMO_CATALOG), block=block, workers=1, export=False)


def test_a_failing_version_is_given_up_and_the_next_poll_moves_on(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rec = _quake()
    with EventState(out) as state:
        state.add(rec)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            advance_quake(state, rec, NOW, _opts(out, block=100), VOPTS, LOG)
            if attempt < MAX_ATTEMPTS:  # recorded, kept for the next poll
                assert rec.status == "sweeping" and rec.building is not None
                assert rec.building.attempts == attempt and "block 100" in rec.building.last_error
                assert f"attempt {attempt} of {MAX_ATTEMPTS}" in rec.note
        assert rec.building is None and rec.status == "pending" and rec.versions == []
        [failed] = rec.failed_versions
        assert failed.n == 1 and failed.attempts == MAX_ATTEMPTS and "--block 100" in failed.reason
        assert failed.scenes and set(failed.scenes) <= rec.used_scenes()  # its scenes are marked
        # the next poll does not build the same version again
        advance_quake(state, rec, NOW + dt.timedelta(hours=1), _opts(out, block=100), VOPTS, LOG)
        assert rec.building is None and len(rec.failed_versions) == 1
        assert rec.status == "pending" and "given up; waiting for a new clear scene" in rec.note
    stored = load_events(out / "events.json")[DEMO_EVENT]  # typed, and round-tripped
    assert stored.failed_versions == [failed] and isinstance(stored.failed_versions[0], FailedVersion)
    # a new clear scene gives a new try
    tiles = [t for t in plan_tiles(stored) if t.skip is None]
    seen = dict.fromkeys(failed.scenes, tiles[0].bbox)
    assert choose_tiles(stored, tiles, [], seen) == []
    assert choose_tiles(stored, tiles, [], {**seen, "S2_NEW": tiles[0].bbox}) == tiles[:1]


def test_a_programming_error_propagates_and_is_not_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rec = _quake()
    with EventState(out) as state:
        state.add(rec)
        advance_quake(state, rec, NOW, _opts(out, block=100), VOPTS, LOG)  # plans, then fails once
        assert rec.building is not None and rec.building.attempts == 1
        # an inconsistent record (a tile the plan does not have) is a bug, not a failed version
        rec.building = Building(n=1, window=rec.building.window, tiles=("x0y0",), scenes=(), attempts=1)
        with pytest.raises(KeyError, match="x0y0"):
            advance_quake(state, rec, NOW, _opts(out, block=512), VOPTS, LOG)
    assert rec.building.attempts == 1 and rec.failed_versions == []


def test_only_expected_errors_are_recorded() -> None:
    expected = version_errors()
    for exc in (UserError("x"), OSError("x"), TimeoutError("x"), ConnectionResetError("x")):
        assert isinstance(exc, expected)
    for exc in (TypeError("x"), KeyError("x"), AttributeError("x"), ValueError("x"), AssertionError("x")):
        assert not isinstance(exc, expected)


def test_another_process_sweeping_the_event_is_not_an_attempt() -> None:
    rec = _quake()
    rec.building = Building(n=1, window=("2018-09-07", "2018-09-15"), tiles=("a",), scenes=("s",))
    note = record_failure(rec, EventBusyError("event us2000demo is being swept by another process"), NOW)
    assert rec.building.attempts == 0 and "not written" in note
    for _ in range(MAX_ATTEMPTS):
        record_failure(rec, OSError("disk full"), NOW)
    assert rec.building is None and rec.failed_versions[0].reason == "OSError: disk full"
