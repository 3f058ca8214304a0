"""Offline STAC validation: jsonschema with a local registry of the vendored schemas (see schemas/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SCHEMAS = Path(__file__).parent / "schemas"
CORE = "https://schemas.stacspec.org/v1.1.0"
_CORE_DIRS = {
    "item.json": "item-spec",
    "basics.json": "item-spec",
    "bands.json": "item-spec",
    "common.json": "item-spec",
    "data-values.json": "item-spec",
    "datetime.json": "item-spec",
    "instrument.json": "item-spec",
    "licensing.json": "item-spec",
    "provider.json": "item-spec",
    "collection.json": "collection-spec",
    "catalog.json": "catalog-spec",
}
EXTENSIONS = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": "extensions/projection-v2.0.0.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "extensions/raster-v1.1.0.json",
}


def _load(rel: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / rel).read_text())


def registry() -> Registry:
    """All vendored schemas under their canonical URLs (plus the JSON Schema meta-schemas)."""
    resources: list[tuple[str, Resource]] = []
    for name, spec in _CORE_DIRS.items():
        url = f"{CORE}/{spec}/json-schema/{name}"
        resources.append((url, DRAFT7.create_resource(_load(f"stac-spec/v1.1.0/{name}"))))
    for name in ("Feature", "Geometry"):
        resources.append(
            (f"https://geojson.org/schema/{name}.json", DRAFT7.create_resource(_load(f"geojson/{name}.json")))
        )
    for url, rel in EXTENSIONS.items():
        resources.append((url, DRAFT7.create_resource(_load(rel))))
    return META_SCHEMAS.with_resources(resources)


def _validator(url: str, reg: Registry) -> Draft7Validator:
    return Draft7Validator({"$ref": url}, registry=reg)


def _fmt(source: str, error: ValidationError) -> str:
    deepest = min(error.context or [error], key=lambda e: -len(e.absolute_path))
    return f"{source}: {deepest.json_path}: {deepest.message[:160]}"


def stac_errors(obj: dict[str, Any]) -> list[str]:
    """Schema errors of a STAC Item or Collection (core + every declared extension); [] when valid."""
    reg = registry()
    kind = {
        "Feature": "item-spec/json-schema/item.json",
        "Collection": "collection-spec/json-schema/collection.json",
    }
    core = f"{CORE}/{kind[obj['type']]}"
    errors = [_fmt("core", e) for e in _validator(core, reg).iter_errors(obj)]
    for ext in obj.get("stac_extensions", []):
        if ext not in EXTENSIONS:
            errors.append(f"no vendored schema for {ext}")
            continue
        errors += [_fmt(ext, e) for e in _validator(ext, reg).iter_errors(obj)]
    return errors


def assert_valid(obj: dict[str, Any]) -> None:
    """Raise ValidationError listing every problem if ``obj`` is not valid STAC."""
    errors = stac_errors(obj)
    if errors:
        raise ValidationError("; ".join(errors))
