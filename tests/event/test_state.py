"""The events file and the per-event lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.event.state import EventBusyError, EventRecord, EventState, StateBusyError, event_lock


def test_events_file_is_locked_and_round_trips(tmp_path: Path) -> None:
    rec = EventRecord(
        id="e1", kind="storm", status="pending", bbox=[0, 0, 1, 1], event_time="2020-01-01T00:00:00+00:00",
        first_seen="x", updated="x",
    )  # fmt: skip
    with EventState(tmp_path) as state:
        state.add(rec)
        state.save()
        with pytest.raises(StateBusyError, match="another poll"), EventState(tmp_path):
            pass
    with EventState(tmp_path) as again:
        assert again.events["e1"] == rec


def test_event_lock_keeps_two_sweeps_of_one_event_apart(tmp_path: Path) -> None:
    with event_lock(tmp_path, "e1"):
        with (
            pytest.raises(EventBusyError, match="being swept by another process"),
            event_lock(tmp_path, "e1"),
        ):
            pass
        with event_lock(tmp_path, "e2"):  # another event is fine
            pass
    with event_lock(tmp_path, "e1"):
        pass
