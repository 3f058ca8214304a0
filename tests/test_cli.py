"""The ``landslide`` command as a user meets it: start-up, help texts, ``--json``, stderr.

Start-up is checked by what is imported (deterministic), not by timing: building the parser, and
answering ``--help`` and ``--version``, must not import torch, dask, xarray, odc or rasterio.
The stderr checks run the real CLI in a subprocess, as a user does, so that any warning printed
by a library (or by a Dask worker process) is seen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pipeline import __version__
from pipeline.cli import HEAVY_MODULES, build_parser, main, subcommands
from pipeline.errors import KNOWN_NOISE, quiet_library_warnings

from .products.store_fixture import make_store

ROOT = Path(__file__).resolve().parents[1]
DEMO_CATALOG = ROOT / "pipeline" / "demo" / "data" / "scene" / "catalog.json"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PYTHONWARNINGS", None)  # what a user's shell has: Python's default filters
    return env


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``landslide ARGS`` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=timeout,
    )


_PROBE = """
import json, sys
from pipeline import cli
{before}
try:
    {call}
except SystemExit:
    pass
sys.stderr.write("\\nLOADED=" + json.dumps(sorted(m for m in cli.HEAVY_MODULES if m in sys.modules)))
"""


def _heavy_loaded(call: str, before: str = "") -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(call=call, before=before)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=120,
    )
    assert "LOADED=" in proc.stderr, proc.stderr
    loaded: list[str] = json.loads(proc.stderr.rsplit("LOADED=", 1)[1])
    return loaded


@pytest.mark.parametrize(
    "call",
    [
        "cli.build_parser()",
        "cli.main(['--version'])",
        "cli.main(['--help'])",
        "cli.main(['sweep', '--help'])",
        "cli.main(['demo', '--help'])",
        "cli.main(['export', '--help'])",
        "cli.main(['models', '--help'])",
    ],
)
def test_start_up_imports_no_heavy_module(call: str) -> None:
    assert _heavy_loaded(call) == []


def test_heavy_module_probe_can_fail() -> None:
    """The probe sees a heavy import when there is one (so the test above can fail)."""
    assert {"torch", "dask", "xarray", "odc", "rasterio"} <= set(HEAVY_MODULES)
    loaded = _heavy_loaded("cli.build_parser()", before="import pipeline.products.polygons")
    assert {"xarray", "rasterio", "geopandas"} <= set(loaded)


def test_version() -> None:
    proc = run_cli("--version", timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"landslide {__version__}"
    assert proc.stderr == ""


def test_every_subcommand_has_a_description() -> None:
    names = {name: sub.description for name, sub in subcommands(build_parser())}
    assert {"sweep", "demo", "export", "models", "evaluate", "data download"} <= set(names)
    missing = [name for name, text in names.items() if not text]
    assert missing == []


_DEFAULT_IN_HELP = re.compile(r"\(default:? (-?[\d.]+)\)")


def test_help_states_the_default_actually_used() -> None:
    """A number given as "(default N)" in any option's help is that option's real default."""
    checked = []
    for name, sub in subcommands(build_parser()):
        for action in sub._actions:
            if not action.help or not isinstance(action.default, int | float):
                continue
            text = action.help % {"default": action.default, "prog": sub.prog}
            match = _DEFAULT_IN_HELP.search(text)
            if match:
                assert float(match.group(1)) == float(action.default), (name, action.dest, text)
                checked.append((name, action.dest))
    assert ("demo", "block") in checked and ("sweep", "block") in checked


def test_demo_help_shows_the_demo_block() -> None:
    parser = build_parser()
    used = parser.parse_args(["demo", "--out", "x.zarr"]).block
    demo = dict(subcommands(parser))["demo"]
    assert used == 512
    assert f"(default {used})" in " ".join(demo.format_help().split())


def test_models_json_to_a_file_or_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "models.json"
    assert main(["models", "--json", str(target)]) == 0
    assert capsys.readouterr().out == ""  # the file, not the table
    rows = json.loads(target.read_text())
    assert {r["name"] for r in rows} == {"unet", "clay", "hybrid"}
    assert main(["models", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == rows
    assert main(["models", "--json", str(tmp_path / "no" / "such" / "dir" / "m.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("landslide: error: cannot write") and err.count("\n") == 1


# --- stderr: one line on error, nothing on success --------------------------------------------

_CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]+(Error|Exception|Warning)\b")


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("landslide: error: ")
    assert not _CLASS_NAME.search(lines[0]), lines[0]  # no internal class names
    for text in expected:
        assert text in lines[0]


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    not_a_store = tmp_path / "photos"
    not_a_store.mkdir()
    (not_a_store / "a.jpg").write_bytes(b"\xff\xd8")
    _assert_one_line_error(run_cli("export", str(not_a_store), "--out", str(tmp_path / "o")), "not a Zarr")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    _assert_one_line_error(run_cli("export", str(a_file), "--out", str(tmp_path / "o")), "not a Zarr")
    _assert_one_line_error(
        run_cli("export", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "o")), "no result store"
    )
    # A partial store: no consolidated metadata (the sweep writes it only at completion), where
    # xarray would print a 5-line RuntimeWarning before the refusal.
    partial = make_store(tmp_path / "partial.zarr", status="in_progress").path
    (partial / ".zmetadata").unlink()
    _assert_one_line_error(
        run_cli("export", str(partial), "--out", str(tmp_path / "o")), "not a complete sweep"
    )
    assert not (tmp_path / "o").exists()


def test_sweep_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        "sweep", "--bbox", "142.1", "42.7", "141.9", "42.85", "--start", "2018-09-07", "--end", "2018-09-30",
        "--catalog", str(DEMO_CATALOG), "--out", str(tmp_path / "s.zarr"), "--no-progress",
    )  # fmt: skip
    _assert_one_line_error(proc)
    assert not (tmp_path / "s.zarr").exists()


def test_export_success_prints_no_warning(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr").path
    proc = run_cli("export", str(store), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "landslide polygon(s)" in proc.stdout


def test_known_library_noise_is_silenced_and_nothing_else(tmp_path: Path) -> None:
    """Each filtered warning is real (raised by the library here) and silenced; others still show."""
    import rasterio.errors
    import xarray as xr
    import zarr

    partial = make_store(tmp_path / "partial.zarr", status="in_progress").path
    (partial / ".zmetadata").unlink()

    def provoke(quiet: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if quiet:
                quiet_library_warnings()
            group = zarr.open_group(str(tmp_path / "v3.zarr"), mode="w", zarr_format=3)
            group.create_array("a", shape=(2,), dtype="f4")
            zarr.consolidate_metadata(str(tmp_path / "v3.zarr"))
            xr.open_zarr(partial).close()
            msg = "Dataset has no geotransform, gcps, or rpcs. The identity matrix will be returned."
            cat = rasterio.errors.NotGeoreferencedWarning
            warnings.warn_explicit(msg, cat, "rasterio/warp.py", 387, module="rasterio.warp")
            warnings.warn_explicit(msg, cat, "user.py", 1, module="rasterio._base")  # opening a bare TIFF
        return [str(w.message)[:40] for w in caught]

    loud = provoke(quiet=False)
    assert len(loud) == 4, loud  # each library really warns (else its filter is dead weight)
    assert provoke(quiet=True) == ["Dataset has no geotransform, gcps, or rp"]  # the one not known as noise
    assert len(KNOWN_NOISE) == 3


def test_local_cluster_never_claims_port_8787() -> None:
    """No "Port 8787 is already in use" when another Dask runs on the machine.

    Deterministic whether or not 8787 is taken right now: the scheduler's HTTP server binds an
    ephemeral port (so not 8787 if it is free) and nothing warns (as Dask does if it is taken).
    """
    from pipeline.cluster import ClusterSpec, dask_client

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dask_client(ClusterSpec(n_workers=1)) as (client, _threads):
            port = client.scheduler_info()["services"].get("dashboard")
    assert port != 8787
    assert not [w for w in caught if "already in use" in str(w.message)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["sweep", "--bbox", "1", "2", "3", "4", "--start", "2018/09/07", "--end", "2018-09-30",
       "--out", "x.zarr"],
      "argument --start: not a date (YYYY-MM-DD): '2018/09/07'"),
     (["demo", "--out", "x.zarr", "--block", "big"], "argument --block: invalid int value: 'big'")],
    ids=["bad date", "bad number"],
)  # fmt: skip
def test_a_bad_value_is_one_line_without_the_usage(tmp_path: Path, args: list[str], expected: str) -> None:
    proc = run_cli(*[str(tmp_path / a) if a == "x.zarr" else a for a in args], timeout=60)
    _assert_one_line_error(proc, expected)
    assert not (tmp_path / "x.zarr").exists()


def test_models_names_the_shipped_checkpoint_as_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.models.checkpoint import shipped_checkpoint

    assert main(["models"]) == 0
    first = capsys.readouterr().out.splitlines()[1]
    assert first.split()[:2] == ["unet", "0.27M"]
    assert shipped_checkpoint().name in first and "default" in first
    assert main(["models", "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)
    (default,) = [r for r in rows if r["default"]]
    assert default["checkpoint"] == shipped_checkpoint().name and 0.26e6 < default["parameters"] < 0.28e6
