"""The events file: which events are pending, being swept, swept or failed (one JSON file).

``OUT_DIR/events.json`` holds one record per event id::

    {"version": 1, "events": {"us2000h8ty": {"kind": "earthquake", "status": "pending", ...}}}

Statuses: ``pending`` (waiting for clear post-event imagery; re-checked at every poll),
``sweeping`` (a sweep was started with the recorded ``window``; a poll that finds this status,
after a crash, calls the same sweep again, which resumes the same store: still one sweep),
``swept`` and ``failed`` (final: never swept again). Earthquakes are mapped in versions
(:mod:`pipeline.event.versions`): ``watching`` (at least one version written; re-checked for new clear
scenes and new ShakeMap versions at every poll) and ``closed`` (final: coverage reached its
threshold or the event is older than ``close_days``). Timestamps are ISO 8601 UTC.

A poll holds an exclusive ``fcntl`` lock on ``events.json.lock`` while it runs, so two polls
(an overlapping schedule, a manual run) never work on the same events at once; the second one
stops at once with :class:`StateBusyError`. Writes go to a temporary file renamed into place.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import UserError
from pipeline.store.atomic import write_atomic

STATE_FILE = "events.json"
Status = Literal["pending", "sweeping", "watching", "swept", "closed", "failed"]
ACTIVE: tuple[Status, ...] = ("pending", "sweeping", "watching")


class StateBusyError(UserError):
    """Another poll holds the events file."""


def utc_iso(t: dt.datetime) -> str:
    """``t`` as ISO 8601 in UTC, to the second."""
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


@dataclass
class EventRecord:
    """What the watch knows about one event.

    Attributes:
        id: Event id (USGS id, or the user's id for a storm).
        kind: ``earthquake`` or ``storm``.
        status: See the module docstring.
        bbox: WGS84 sweep box ``[w, s, e, n]``.
        event_time: Event time (ISO, UTC).
        first_seen: When a poll first recorded it.
        updated: Last change of the record.
        checks: How many polls looked for imagery.
        last_checked: When imagery was last looked for.
        window: ``[start, end]`` dates of the sweep once started (kept for a resume).
        scenes: Scene ids found by the last imagery check.
        result: The regional sweep's result once swept.
        note: Why it is pending or failed (one line).
        magnitude: Earthquake magnitude (None for storms).
        place: USGS place description or the storm's name.
        lon: Epicentre longitude (earthquakes).
        lat: Epicentre latitude (earthquakes).
        detail: URL of the event's ComCat detail document (earthquakes).
        area_source: ``shakemap`` or ``keefer`` (the fallback when no ShakeMap could be had).
        area_note: Why the area is what it is (one line).
        shakemaps_done: ShakeMap versions already planned from (``event:source:version``).
        shakemap: The ShakeMap the current plan comes from (version, source, grid file).
        tiles: The current plan's sweep tiles (id, bbox, area_km2, max_slope_deg, skip).
        versions: The map versions written, oldest first (see :mod:`pipeline.event.versions`).
        building: The version being written (kept for a resume after a crash), or None.
    """

    id: str
    kind: str
    status: Status
    bbox: list[float]
    event_time: str
    first_seen: str
    updated: str
    checks: int = 0
    last_checked: str | None = None
    window: list[str] | None = None
    scenes: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    note: str = ""
    magnitude: float | None = None
    place: str = ""
    lon: float | None = None
    lat: float | None = None
    detail: str | None = None
    area_source: str | None = None
    area_note: str = ""
    shakemaps_done: list[str] = field(default_factory=list)
    shakemap: dict[str, Any] | None = None
    tiles: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    building: dict[str, Any] | None = None


class EventState:
    """The events file of an output directory, locked while open (context manager).

    Example::

        with EventState(out_dir) as state:
            state.add(record)
            state.save()
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / STATE_FILE
        self.events: dict[str, EventRecord] = {}
        self._lock_fd: int | None = None

    def __enter__(self) -> EventState:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".json.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StateBusyError(
                f"another poll is working on {self.path}; try again when it has finished"
            ) from exc
        self._lock_fd = fd
        self.events = load_events(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.events

    def add(self, record: EventRecord) -> None:
        """Track a new event (ids already tracked are never replaced)."""
        self.events.setdefault(record.id, record)

    def active(self) -> list[EventRecord]:
        """Records still to be worked on (``pending`` or an interrupted ``sweeping``), oldest first."""
        return sorted(
            (r for r in self.events.values() if r.status in ACTIVE), key=lambda r: (r.event_time, r.id)
        )

    def save(self) -> None:
        """Write the file atomically."""
        doc = {"version": 1, "events": {k: asdict(v) for k, v in sorted(self.events.items())}}
        write_atomic(self.path, json.dumps(doc, indent=2))


def load_events(path: Path) -> dict[str, EventRecord]:
    """Read an events file (empty if it does not exist).

    Raises:
        UserError: The file exists but is not an events file.
    """
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {k: EventRecord(**v) for k, v in doc["events"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path} is not a landslide events file ({exc}); move it away to start afresh"
        ) from exc


class EventBusyError(UserError):
    """Another process is sweeping this event."""


class event_lock:
    """Exclusive ``fcntl`` lock on ``OUT/<event>.lock`` while one event is swept.

    The events-file lock already keeps two polls of one output directory apart; this one also
    keeps a manual ``regional-sweep`` or a second watch process from sweeping the same event at
    the same time (never two sweeps of one event at once).

    Raises:
        EventBusyError: The lock is held elsewhere.
    """

    def __init__(self, out_dir: str | os.PathLike[str], event_id: str) -> None:
        self.path = Path(out_dir) / f"{event_id}.lock"
        self._fd: int | None = None

    def __enter__(self) -> event_lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise EventBusyError(f"event {self.path.stem} is being swept by another process") from exc
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
