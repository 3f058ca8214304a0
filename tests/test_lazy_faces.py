"""The lazy package faces: each public name written once, every one resolving, nothing heavy at import."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.lazy import face_names

FACES = ("pipeline.store", "pipeline.sweep")


@pytest.mark.parametrize("package", FACES)
def test_each_public_name_is_written_once(package: str) -> None:
    module = importlib.import_module(package)
    source = Path(module.__file__ or "").read_text()
    names, lazy = face_names(module.__file__ or "")
    assert lazy and set(lazy) <= set(module.__all__) and set(names) <= set(module.__all__)
    for name in module.__all__:
        lines = [ln for ln in source.splitlines() if f" {name} " in f" {ln} ".replace(",", " ")]
        assert len(lines) == 1, (name, lines)  # one list: the import that also types it


@pytest.mark.parametrize("package", FACES)
def test_every_name_of_a_face_resolves_to_its_module_s_object(package: str) -> None:
    module = importlib.import_module(package)
    _, lazy = face_names(module.__file__ or "")
    for name in module.__all__:
        value = getattr(module, name)
        if name in lazy:
            source, attribute = lazy[name]
            assert value is getattr(importlib.import_module(source), attribute)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_importing_the_faces_loads_nothing_heavy() -> None:
    probe = (
        "import sys, json; import pipeline.store, pipeline.sweep; "
        "print(json.dumps(sorted(m for m in ('xarray', 'dask', 'zarr', 'torch') if m in sys.modules)))"
    )
    cmd = [sys.executable, "-c", probe]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == []
