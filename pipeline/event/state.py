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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import UserError
from pipeline.event.config import MAX_ATTEMPTS, safe_name
from pipeline.event.mosaic import EventGrid
from pipeline.event.tiles import AreaTile
from pipeline.store.atomic import write_atomic

STATE_FILE = "events.json"
Status = Literal["pending", "sweeping", "watching", "swept", "closed", "failed"]
ACTIVE: tuple[Status, ...] = ("pending", "sweeping", "watching")


class StateBusyError(UserError):
    """Another poll holds the events file."""


def utc_iso(t: dt.datetime) -> str:
    """``t`` as ISO 8601 in UTC, to the second."""
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ShakeMapPlan:
    """The ShakeMap version the current plan comes from.

    Attributes:
        event_id: The event id the product belongs to.
        version: ``properties.version`` of the product.
        source: Product source (``us``, ``atlas``, ...).
        grid_url: Where its ``grid.xml`` was read.
        update_time: Product update time (epoch ms).
        layout: ``"3.5"`` or ``"4"``.
        grid: The copy of the grid, relative to the event's directory.
        rule: The threshold rule (``"PGA >= 0.1 g"``).
        planned: When it was planned from (ISO, UTC).
    """

    event_id: str
    version: str
    source: str
    grid_url: str
    update_time: int
    layout: str
    grid: str
    rule: str
    planned: str


@dataclass(frozen=True)
class Building:
    """The version being written (kept for a resume after a crash).

    Attributes:
        n: Its number.
        window: ``(start, end)`` ISO dates of the post-event window.
        tiles: The tiles it sweeps.
        scenes: The clear scenes found when it was started.
        attempts: How many times writing it failed.
        last_error: Why the last attempt failed (one line), or "".
    """

    n: int
    window: tuple[str, str]
    tiles: tuple[str, ...]
    scenes: tuple[str, ...]
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class Version:
    """One map version written.

    Attributes:
        n: Its number (1, 2, ...).
        created: When it was written (ISO, UTC).
        window: ``(start, end)`` ISO dates of its post-event window.
        scenes: Sentinel-2 scenes its mosaic holds (its own and those of the regions it reused).
        swept_tiles: Tiles swept for it (the regions of the others are the previous version's).
        store: Its mosaic (``mosaic.zarr/v<n>``), relative to the event's directory.
        tile_coverage: Tile id -> share of the tile's area with clear data.
        coverage: Share of the planned area with clear data.
        summary: Its ``summary.json``, relative to the event's directory.
        artifact: Id of its Prefect artifact, or None.
        shakemap_version: The ShakeMap version its area came from, or None.
        grid: The event grid of its mosaic (:class:`pipeline.event.mosaic.EventGrid`).
        regions: The regions it computed (the others are hard links to the previous version's).
        swept_regions: Every region swept by it or an earlier version (what the map shows).
        tiles_swept: Every tile swept by it or an earlier version.
        storage: ``total_bytes``, ``new_bytes`` (in files no earlier version holds), ``files``,
            ``shared_files`` of its mosaic.
    """

    n: int
    created: str
    window: tuple[str, str]
    scenes: tuple[str, ...]
    swept_tiles: tuple[str, ...]
    store: str
    tile_coverage: dict[str, float]
    coverage: float
    summary: str
    artifact: str | None = None
    shakemap_version: str | None = None
    grid: EventGrid | None = None
    regions: tuple[int, ...] = ()
    swept_regions: tuple[int, ...] = ()
    tiles_swept: tuple[str, ...] = ()
    storage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FailedVersion:
    """A version given up after :data:`~pipeline.event.config.MAX_ATTEMPTS` failures.

    Its scenes count as used, so the next poll does not build the same version again; a new
    clear scene (or a grown area) gives a new try.

    Attributes:
        n: The number it would have had.
        failed: When it was given up (ISO, UTC).
        tiles: The tiles it tried to sweep.
        scenes: The scenes it tried (marked used).
        attempts: How many times it was tried.
        reason: The last error (one line).
    """

    n: int
    failed: str
    tiles: tuple[str, ...]
    scenes: tuple[str, ...]
    attempts: int
    reason: str


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
        result: The sweep's report once swept (the regional sweep's, or the newest version's).
        note: Why it is pending or failed (one line).
        magnitude: Earthquake magnitude (None for storms).
        place: USGS place description or the storm's name.
        lon: Epicentre longitude (earthquakes).
        lat: Epicentre latitude (earthquakes).
        detail: URL of the event's ComCat detail document (earthquakes).
        area_source: ``shakemap`` or ``keefer`` (the fallback when no ShakeMap could be had).
        area_note: Why the area is what it is (one line).
        shakemaps_done: ShakeMap versions already planned from (``event:source:version``).
        shakemap: The ShakeMap the current plan comes from, or None.
        tiles: The current plan's sweep tiles.
        versions: The map versions written, oldest first (see :mod:`pipeline.event.versions`).
        building: The version being written (kept for a resume after a crash), or None.
        failed_versions: Versions given up after repeated failures (their scenes count as used).
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
    shakemap: ShakeMapPlan | None = None
    tiles: list[AreaTile] = field(default_factory=list)
    versions: list[Version] = field(default_factory=list)
    building: Building | None = None
    failed_versions: list[FailedVersion] = field(default_factory=list)

    def used_scenes(self) -> set[str]:
        """Scenes used by a version, or tried by one given up."""
        return {s for v in self.versions for s in v.scenes} | {
            s for f in self.failed_versions for s in f.scenes
        }

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values (what ``events.json`` holds)."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EventRecord:
        """A record from :meth:`to_json`'s output.

        Raises:
            TypeError: A field is missing or unknown.
            KeyError: A nested record lacks a field.
        """
        d = dict(doc)
        if d.get("shakemap") is not None:
            d["shakemap"] = ShakeMapPlan(**d["shakemap"])
        d["tiles"] = [_tile(t) for t in d.get("tiles", [])]
        d["versions"] = [_version(v) for v in d.get("versions", [])]
        if d.get("building") is not None:
            d["building"] = _building(d["building"])
        d["failed_versions"] = [_failed(f) for f in d.get("failed_versions", [])]
        return cls(**d)


def _tile(t: dict[str, Any]) -> AreaTile:
    b = t["bbox"]
    return AreaTile(
        t["id"], (b[0], b[1], b[2], b[3]), float(t["area_km2"]), t.get("max_slope_deg"), t.get("skip")
    )


def _building(b: dict[str, Any]) -> Building:
    w = b["window"]
    return Building(
        n=int(b["n"]),
        window=(w[0], w[1]),
        tiles=tuple(b["tiles"]),
        scenes=tuple(b["scenes"]),
        attempts=int(b.get("attempts", 0)),
        last_error=str(b.get("last_error", "")),
    )


def _version(v: dict[str, Any]) -> Version:
    w, g = v["window"], v.get("grid")
    d = {k: val for k, val in v.items() if k != "stores"}  # tile stores: the layout before the mosaic
    return Version(**{
        **d,
        "store": v.get("store", ""),
        "window": (w[0], w[1]),
        "scenes": tuple(v["scenes"]),
        "swept_tiles": tuple(v["swept_tiles"]),
        "grid": EventGrid(**{**g, "shape": tuple(g["shape"])}) if g else None,
        "regions": tuple(v.get("regions", ())),
        "swept_regions": tuple(v.get("swept_regions", ())),
        "tiles_swept": tuple(v.get("tiles_swept", ())),
    })  # fmt: skip


def _failed(f: dict[str, Any]) -> FailedVersion:
    return FailedVersion(**{**f, "tiles": tuple(f["tiles"]), "scenes": tuple(f["scenes"])})


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
        doc = {"version": 1, "events": {k: v.to_json() for k, v in sorted(self.events.items())}}
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
        return {k: EventRecord.from_json(v) for k, v in doc["events"].items()}
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
        self.path = Path(out_dir) / f"{safe_name(event_id, 'event id')}.lock"
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


def version_errors() -> tuple[type[BaseException], ...]:
    """The failures of writing a version that are recorded (and retried), not raised.

    What a user or the world can cause: bad or unreachable input (:class:`UserError` and its
    subclasses: catalog, cube, checkpoint, store, feed), I/O and network errors, unreadable
    rasters, a worker that died. Anything else (``TypeError``, ``KeyError``, ...) is a bug in
    this code and propagates.
    """
    from distributed import KilledWorker
    from rasterio.errors import RasterioError

    return (UserError, OSError, TimeoutError, RasterioError, KilledWorker)


def record_failure(
    rec: EventRecord, exc: BaseException, now: dt.datetime, max_attempts: int = MAX_ATTEMPTS
) -> str:
    """Record a failed attempt at ``rec.building``; give the version up after ``max_attempts``.

    Another process sweeping the event (:class:`EventBusyError`) is not an attempt. A version
    given up goes to ``rec.failed_versions`` with its reason; its scenes count as used, so the
    next poll does not build it again (a new clear scene or a grown area gives a new try). The
    event stays active (``watching`` with earlier versions, else ``pending``) until it closes
    or gives up without imagery.

    Returns:
        The note to save (one line).
    """
    b = rec.building
    assert b is not None
    why = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
    if isinstance(exc, EventBusyError):
        return f"version {b.n} not written: {why}"[:500]
    b = replace(b, attempts=b.attempts + 1, last_error=why)
    rec.building = b
    if b.attempts < max_attempts:
        return f"version {b.n} failed (attempt {b.attempts} of {max_attempts}): {why}"[:500]
    rec.failed_versions.append(
        FailedVersion(
            n=b.n, failed=utc_iso(now), tiles=b.tiles, scenes=b.scenes, attempts=b.attempts, reason=why
        )
    )
    rec.status, rec.building = ("watching" if rec.versions else "pending"), None
    return f"version {b.n} given up after {b.attempts} attempts (its scenes are skipped from now on): {why}"[
        :500
    ]
