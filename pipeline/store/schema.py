"""The ``landslide:*`` attributes of a result store: their names and types, in one place.

Every module that writes or reads a store attribute names it through :data:`KEYS` (never a
string literal), and the groups of attributes written together are frozen dataclasses:

* :class:`RunMeta`, written when the store is created (what was asked and with which model);
* :class:`Outcome`, written when the sweep completes (what was found);
* the progress record (``status``, ``fingerprint``, ``regions_done``, ``region_checksums``,
  ``planned_scenes``, ``skipped_scenes``, ``skipped_reasons``, ``regions_total``), written by
  the kill-safe protocol of :mod:`pipeline.store.writer` and read back as :class:`Progress`.

This module imports nothing heavy (the CLI may import it at start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

PREFIX = "landslide:"
#: ``landslide:status`` values.
IN_PROGRESS = "in_progress"
COMPLETE = "complete"


@dataclass(frozen=True)
class Keys:
    """The name of every ``landslide:*`` attribute (use :data:`KEYS`, never a literal)."""

    status: str = "landslide:status"
    fingerprint: str = "landslide:fingerprint"
    regions_done: str = "landslide:regions_done"
    regions_total: str = "landslide:regions_total"
    region_checksums: str = "landslide:region_checksums"
    planned_scenes: str = "landslide:planned_scenes"
    skipped_scenes: str = "landslide:skipped_scenes"
    skipped_reasons: str = "landslide:skipped_reasons"
    model: str = "landslide:model"
    checkpoint: str = "landslide:checkpoint"
    checkpoint_sha256: str = "landslide:checkpoint_sha256"
    threshold: str = "landslide:threshold"
    bands: str = "landslide:bands"
    start: str = "landslide:start"
    end: str = "landslide:end"
    bbox: str = "landslide:bbox"
    event_id: str = "landslide:event_id"
    block: str = "landslide:block"
    overlap: str = "landslide:overlap"
    composite: str = "landslide:composite"
    software_version: str = "landslide:software_version"
    scenes: str = "landslide:scenes"
    warnings: str = "landslide:warnings"
    chips_run: str = "landslide:chips_run"
    completed_at: str = "landslide:completed_at"
    area_km2: str = "landslide:area_km2"
    requested_area_km2: str = "landslide:requested_area_km2"
    valid_fraction: str = "landslide:valid_fraction"
    landslide_km2: str = "landslide:landslide_km2"
    base_rate: str = "landslide:base_rate"
    training_base_rate: str = "landslide:training_base_rate"

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) != PREFIX + f.name:
                raise ValueError(f"attribute key {f.name} must be {PREFIX}{f.name}")


KEYS = Keys()


def _to_attrs(obj: Any) -> dict[str, Any]:
    return {getattr(KEYS, f.name): _plain(getattr(obj, f.name)) for f in fields(obj)}


def _plain(value: Any) -> Any:
    """JSON-safe attribute value: tuples -> lists, mappings -> dicts, numpy scalars -> Python."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value


@dataclass(frozen=True)
class RunMeta:
    """What a sweep was asked to do, written when its store is created.

    Attributes:
        model: Model name of the checkpoint.
        checkpoint: File name of the checkpoint.
        checkpoint_sha256: Its SHA-256.
        threshold: The checkpoint's decision threshold.
        bands: Input bands, in the model's order.
        start: First day of the window (ISO date).
        end: Last day of the window (ISO date).
        bbox: The requested WGS84 box.
        event_id: Event identifier, or None.
        block: Block size (pixels; also the store's chunk size).
        overlap: Pixels shared by neighbouring chips.
        composite: How scenes were composited.
        software_version: ``pipeline.__version__``.
        regions_total: Number of regions of the plan.
        base_rate: Landslide fraction the probabilities were corrected to (``--base-rate``), or
            None (the training base rate, no correction).
        training_base_rate: The checkpoint calibration's base rate, or None (not recorded).
    """

    model: str
    checkpoint: str
    checkpoint_sha256: str
    threshold: float
    bands: tuple[str, ...]
    start: str
    end: str
    bbox: tuple[float, float, float, float]
    event_id: str | None
    block: int
    overlap: int
    composite: str
    software_version: str
    regions_total: int
    base_rate: float | None = None
    training_base_rate: float | None = None

    def to_attrs(self) -> dict[str, Any]:
        """The attributes as written (``landslide:<field>`` -> JSON value)."""
        return _to_attrs(self)


@dataclass(frozen=True)
class Outcome:
    """What a sweep found, written when it completes.

    Attributes:
        scenes: ``{"id", "collection", "href"}`` of every scene used (hrefs unsigned).
        skipped_scenes: Ids of the scenes left out as unreadable.
        skipped_reasons: Id -> why.
        warnings: What a responder must know about the result.
        chips_run: Chips the model ran in this run (a resumed run counts only its own).
        completed_at: UTC time of completion (ISO).
        area_km2: Area of the store's grid: the requested box on the UTM grid, padded to whole
            128-px chips.
        requested_area_km2: Area of the requested box itself (on the ellipsoid).
        valid_fraction: Fraction of the grid's pixels with a valid probability.
        landslide_km2: Area of valid pixels with probability >= threshold (every pixel; the
            exported polygons drop patches below their minimum area).
    """

    scenes: tuple[Mapping[str, str], ...]
    skipped_scenes: tuple[str, ...]
    skipped_reasons: Mapping[str, str]
    warnings: tuple[str, ...]
    chips_run: int
    completed_at: str
    area_km2: float
    requested_area_km2: float
    valid_fraction: float
    landslide_km2: float

    def to_attrs(self) -> dict[str, Any]:
        """The attributes as written (``landslide:<field>`` -> JSON value)."""
        return _to_attrs(self)


@dataclass(frozen=True)
class Progress:
    """The progress record of a store, as read back.

    Attributes:
        status: ``in_progress``, ``complete``, or None (not a landslide store).
        fingerprint: Identity of the sweep that writes it.
        done: Indices of regions recorded as written.
        total: Number of regions, when recorded.
        skipped: Scenes left out so far (id -> reason).
        planned: Scene ids the sweep uses (a resumed run uses exactly these).
        checksums: Region index -> checksum of its chunk files, recorded with the region.
    """

    status: str | None
    fingerprint: str | None
    done: tuple[int, ...]
    total: int | None
    skipped: Mapping[str, str] = field(default_factory=dict)
    planned: tuple[str, ...] = ()
    checksums: Mapping[int, str] = field(default_factory=dict)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Progress:
        """Read the progress record out of group attributes (missing keys read as empty)."""
        total = attrs.get(KEYS.regions_total)
        return cls(
            status=attrs.get(KEYS.status),
            fingerprint=attrs.get(KEYS.fingerprint),
            done=tuple(sorted(int(i) for i in attrs.get(KEYS.regions_done, []))),
            total=int(total) if total is not None else None,
            skipped={str(k): str(v) for k, v in dict(attrs.get(KEYS.skipped_reasons, {})).items()},
            planned=tuple(str(s) for s in attrs.get(KEYS.planned_scenes, [])),
            checksums={int(k): str(v) for k, v in dict(attrs.get(KEYS.region_checksums, {})).items()},
        )
