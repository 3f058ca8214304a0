"""Kills and interference: the CLI SIGKILLed mid-sweep and re-run, a Dask worker SIGKILLed mid-sweep,
a damaged region found on resume, two sweeps on one store, Ctrl-C.

Real processes throughout: the CLI runs as a subprocess, the cluster is a ``dask scheduler`` with
``dask worker`` processes (each under its nanny, which restarts a killed worker). A 1536-px square
area (the demo's real COGs tiled 4 x 3, ``bench.scene``) is swept with 512-px blocks, the smallest
the CLI accepts, and one block per region (9 regions), so kills land between and inside region
writes. Every finished store is compared byte for byte with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
import torch
from distributed import Client

from pipeline.bands import SWEEP_BANDS
from pipeline.cli import main
from pipeline.demo import scene
from pipeline.errors import UserError
from pipeline.models.checkpoint import IDENTITY, CheckpointMeta, save_checkpoint
from pipeline.models.ref import plugin_name
from pipeline.models.registry import build_model, default_config
from pipeline.products.export import FILE_NAMES, products_complete
from pipeline.store import open_result
from pipeline.sweep import SweepConfig, run_sweep
from tests.servers import assert_same_store, dask_cluster_processes, store_attrs_file

#: Module fixtures (a cluster and a reference sweep) count against the first test's time limit;
#: on a loaded 2-core machine a sweep here takes minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
# Functions of this module run on the workers (Client.run), which cannot import ``tests``.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: Copies of the demo scene in the swept scene (1536 x 1920 px); the sweep takes its west 80 %:
#: 1536 x 1536 px, 9 regions of one 512-px block.
SCENE_REPS, WEST_FRACTION, SIDE = (4, 3), 0.8, 1536
BLOCK, REGION_BLOCKS, REGIONS = 512, 1, 9
#: The scene's catalog and the swept bbox (set by the ``area`` fixture before any sweep).
AREA: dict[str, Any] = {}
#: Totals reported by the tests (docs/reliability.md quotes them).
FIGURES: dict[str, float] = {
    "kills": 0, "bytes": 0, "reference_wall_s": 0.0, "reference_compute_s": 0.0, "damaged_regions": 0,
}  # fmt: skip
#: Bytes of the three arrays of one 1536 x 1536 store: float32 + uint8 + float32 per pixel.
STORE_BYTES = SIDE * SIDE * (4 + 1 + 4)
KILL_TESTS = (
    "test_cli_killed_after_first_region_resumes_to_identical_store",
    "test_cli_killed_at_a_random_time_resumes_to_identical_store",
    "test_worker_killed_mid_sweep_does_not_fail_it",
)


@pytest.fixture(scope="module")
def sweep_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quarter-width U-Net (16-128) with seeded random weights: slow enough (~0.2 s a 512-px
    region on 2 cores) that a kill or a Ctrl-C lands while the sweep is still computing. (With the
    tiny test U-Net the nine regions take a fraction of a second once the model is loaded.)"""
    torch.manual_seed(0)
    config = {**default_config("unet"), "widths": [16, 32, 64, 128]}
    meta = CheckpointMeta(
        model="unet", config=config, bands=SWEEP_BANDS, norm_mean=tuple([1.0] * len(SWEEP_BANDS)),
        norm_std=tuple([0.5] * len(SWEEP_BANDS)), threshold=0.5, calibration=IDENTITY,
        training={"note": "random weights for tests"},
    )  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "unet-paper-width.safetensors"
    save_checkpoint(path, build_model("unet", config).eval().state_dict(), meta)
    return path


@pytest.fixture(scope="module", autouse=True)
def area(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The swept scene: the demo's real COGs tiled, with a local catalog; its west 80 %."""
    from bench.scene import build_tiled_scene

    tiled = build_tiled_scene(tmp_path_factory.mktemp("kill-scene"), *SCENE_REPS)
    w, s, e, n = tiled.bbox
    AREA.update(catalog=str(tiled.catalog), bbox=(w, s, w + WEST_FRACTION * (e - w), n))


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    with dask_cluster_processes(2) as (addr, workers):
        yield addr, workers


@pytest.fixture(scope="module")
def client(cluster: tuple[str, list[subprocess.Popen[bytes]]]) -> Iterator[Client]:
    with Client(cluster[0]) as c:
        yield c


def _cfg(out: Path, ckpt: Path) -> SweepConfig:
    return SweepConfig(
        bbox=AREA["bbox"], start=scene.DEMO_START, end=scene.DEMO_END, out=out,
        catalog=AREA["catalog"], checkpoint=ckpt, block=BLOCK, region_blocks=REGION_BLOCKS,
        progress=False, device="cpu",
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, client: Client, sweep_checkpoint: Path) -> Path:
    """An uninterrupted sweep with the same parameters."""
    out = tmp_path_factory.mktemp("kill") / "reference.zarr"
    summary = run_sweep(_cfg(out, sweep_checkpoint), client=client)
    assert summary.regions_total == REGIONS == summary.regions_computed
    FIGURES["reference_wall_s"] = summary.wall_s
    FIGURES["reference_compute_s"] = summary.chips / max(summary.chips_per_s, 1e-9)
    return out


def _cli(out: Path, ckpt: Path, scheduler: str | None) -> list[str]:
    where = ["--scheduler", scheduler] if scheduler else ["--workers", "1"]
    return [
        sys.executable, "-m", "pipeline.cli", "sweep", "--bbox", *map(str, AREA["bbox"]),
        "--start", str(scene.DEMO_START), "--end", str(scene.DEMO_END),
        "--catalog", AREA["catalog"], "--checkpoint", str(ckpt), "--out", str(out),
        "--block", str(BLOCK), "--region-blocks", str(REGION_BLOCKS), "--device", "cpu", *where,
    ]  # fmt: skip


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the CLI process, then each process it started (as if the machine lost power)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    os.kill(proc.pid, signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(children, timeout=30)


def _kill_when(proc: subprocess.Popen[bytes], out: Path, min_done: int, at: float | None) -> int:
    """Kill the CLI once ``min_done`` regions are recorded, or ``at`` s after its store appeared.

    Returns the number of regions recorded at the kill.
    """
    t0 = time.monotonic()
    while at is not None and proc.poll() is None and not out.exists():
        time.sleep(0.02)
        t0 = time.monotonic()
    while proc.poll() is None:
        done = len(store_attrs_file(out).get("landslide:regions_done", []))  # type: ignore[arg-type]
        if (at is None and done >= min_done) or (at is not None and time.monotonic() - t0 >= at):
            _kill_tree(proc)
            return done
        time.sleep(0.05)
    raise AssertionError(f"the sweep ended (rc {proc.returncode}) before the kill")


def _resume(out: Path, ckpt: Path, scheduler: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(out, ckpt, scheduler), capture_output=True, text=True, timeout=900)


def _check_partial(out: Path) -> None:
    """A killed sweep's store is never presented as complete (when it exists at all)."""
    if not out.exists():
        return
    assert store_attrs_file(out).get("landslide:status") == "in_progress"
    with pytest.raises(UserError, match="not a complete sweep"):
        open_result(out)


def test_cli_killed_after_first_region_resumes_to_identical_store(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]], reference: Path,
    sweep_checkpoint: Path,
) -> None:  # fmt: skip
    out = tmp_path / "killed.zarr"
    # The first run owns its LocalCluster: killing it kills its workers too.
    proc = subprocess.Popen(_cli(out, sweep_checkpoint, None), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    done = _kill_when(proc, out, min_done=1, at=None)
    FIGURES["kills"] += 1
    assert 1 <= done < REGIONS
    _check_partial(out)
    # The killed CLI never released its lock: the re-run recognises it as stale and takes it over.
    assert json.loads((tmp_path / ".killed.zarr.lock").read_text())["pid"] == proc.pid
    rerun = _resume(out, sweep_checkpoint, cluster[0])
    assert rerun.returncode == 0, rerun.stderr
    assert f"took over the lock of a killed sweep (pid {proc.pid} on " in rerun.stderr
    assert not (tmp_path / ".killed.zarr.lock").exists()
    recorded = int(rerun.stderr.split("resuming: ")[1].split("/")[0])
    assert recorded >= done
    assert f"resuming: {recorded}/{REGIONS} regions already written" in rerun.stderr
    assert f"regions           {REGIONS - recorded} computed of {REGIONS}" in rerun.stdout
    FIGURES["bytes"] += assert_same_store(out, reference)


@pytest.mark.parametrize("seed", [20261124])
def test_cli_killed_at_a_random_time_resumes_to_identical_store(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]], reference: Path,
    sweep_checkpoint: Path, seed: int,
) -> None:  # fmt: skip
    out = tmp_path / "random.zarr"
    # A random moment within the sweep's compute (the reference's compute time, measured this run;
    # its wall time also counts search and cluster start, which come before the store exists).
    at = random.Random(seed).uniform(0.05, 0.7) * float(FIGURES["reference_compute_s"])
    proc = subprocess.Popen(_cli(out, sweep_checkpoint, cluster[0]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    done = _kill_when(proc, out, min_done=0, at=at)
    FIGURES["kills"] += 1
    _check_partial(out)
    rerun = _resume(out, sweep_checkpoint, cluster[0])
    assert rerun.returncode == 0, f"seed {seed}, killed at {at:.2f} s after {done} regions: {rerun.stderr}"
    FIGURES["bytes"] += assert_same_store(out, reference)


def test_worker_killed_mid_sweep_does_not_fail_it(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]], client: Client, reference: Path,
    sweep_checkpoint: Path,
) -> None:  # fmt: skip
    out = tmp_path / "worker-loss.zarr"
    nanny = cluster[1][0]
    pids = client.run(os.getpid)
    (victim,) = [p for p in psutil.Process(nanny.pid).children() if p.pid in pids.values()]
    (victim_addr,) = [addr for addr, pid in pids.items() if pid == victim.pid]
    at_kill: dict[str, Any] = {}

    def kill_one_worker() -> None:
        with Client(cluster[0], timeout="30s") as watcher:
            while len(store_attrs_file(out).get("landslide:regions_done", [])) < 2:  # type: ignore[arg-type]
                time.sleep(0.02)
            # Kill while the victim is running a task, so that the task must be run again.
            deadline = time.monotonic() + 60
            while not watcher.processing(workers=[victim_addr]).get(victim_addr):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.002)
            victim.kill()  # SIGKILL of the worker process; its nanny starts a replacement
            at_kill.update(attrs=store_attrs_file(out), t=time.monotonic())

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    summary = run_sweep(_cfg(out, sweep_checkpoint), client=client)
    t_end = time.monotonic()
    killer.join(timeout=5)
    assert at_kill, "the worker was not killed during the sweep"
    # The kill landed before the sweep ended: the store was still in progress, regions were left.
    assert at_kill["t"] < t_end
    assert at_kill["attrs"]["landslide:status"] == "in_progress"
    assert 2 <= len(at_kill["attrs"]["landslide:regions_done"]) < REGIONS
    FIGURES["kills"] += 1
    assert summary.regions_computed == REGIONS
    # The scheduler removed the victim with work on it, which it re-ran elsewhere: the tasks it
    # was running, or results it held that were still needed.
    removed = [
        msg for _, msg in client.get_events("all")
        if isinstance(msg, dict) and msg.get("action") == "remove-worker" and msg.get("worker") == victim_addr
    ]  # fmt: skip
    assert removed, "the scheduler never saw the worker go"
    rerun = set(removed[-1]["processing-tasks"]) | set(removed[-1]["lost-computed-tasks"])
    assert rerun, removed[-1]
    FIGURES["bytes"] += assert_same_store(out, reference)
    # The nanny started a replacement, and the model plugin (registered with the scheduler) is
    # loaded on it.
    client.wait_for_workers(2, timeout=60)
    name = plugin_name(_sha(out))
    loaded = client.run(_plugin_loaded, name=name)
    assert len(loaded) == 2 and all(loaded.values()), loaded
    assert victim.pid not in client.run(os.getpid).values()


def _make_interrupted(reference: Path, out: Path) -> None:
    """``out``: the reference as a kill right after its last region record leaves it."""
    shutil.copytree(reference, out)
    (out / ".zmetadata").unlink()
    attrs = json.loads((out / ".zattrs").read_text())
    outcome = {"scenes", "warnings", "chips_run", "completed_at", "area_km2", "requested_area_km2",
               "valid_fraction", "landslide_km2"}  # fmt: skip
    attrs = {k: v for k, v in attrs.items() if k.removeprefix("landslide:") not in outcome}
    attrs["landslide:status"] = "in_progress"
    (out / ".zattrs").write_text(json.dumps(attrs))


def test_a_damaged_region_is_found_on_resume_and_recomputed(
    tmp_path: Path, client: Client, reference: Path, sweep_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "damaged.zarr"
    _make_interrupted(reference, out)
    assert len(store_attrs_file(out)["landslide:region_checksums"]) == REGIONS  # type: ignore[arg-type]
    # Region 5 (block row 1, col 1): a truncated chunk; region 7 (row 2, col 0): a deleted one;
    # region 9 (row 2, col 2): a chunk overwritten with other bytes of the same length.
    chunk = out / "probability" / "1.1"
    chunk.write_bytes(chunk.read_bytes()[:100])
    (out / "slope" / "2.0").unlink()
    other = out / "valid" / "2.2"
    other.write_bytes(bytes(b ^ 0xFF for b in other.read_bytes()))
    summary = run_sweep(_cfg(out, sweep_checkpoint), client=client)
    err = capsys.readouterr().err
    assert f"resuming: {REGIONS - 3}/{REGIONS} regions already written" in err
    assert "damaged: region(s) 5, 7, 9 no longer match their checksums; recomputing" in err
    assert summary.regions_computed == 3
    FIGURES["damaged_regions"] += 3
    FIGURES["bytes"] += assert_same_store(out, reference)


def test_a_second_sweep_on_the_same_out_is_refused_naming_the_first(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]], reference: Path,
    sweep_checkpoint: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "shared.zarr"
    first = subprocess.Popen(_cli(out, sweep_checkpoint, cluster[0]), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
    while first.poll() is None and not out.exists():
        time.sleep(0.02)
    assert first.poll() is None, "the first sweep ended before the second started"
    code = main(_cli(out, sweep_checkpoint, cluster[0])[3:])
    err = capsys.readouterr().err
    assert first.poll() is None, "the first sweep ended before the second was refused"
    assert code == 2
    assert err.count("\n") == 1 and f"is being written by pid {first.pid} on " in err, err
    _, first_err = first.communicate(timeout=900)
    assert first.returncode == 0, first_err
    FIGURES["bytes"] += assert_same_store(out, reference)


def test_ctrl_c_prints_one_line_and_leaves_a_resumable_store(
    tmp_path: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]], sweep_checkpoint: Path
) -> None:
    """A real SIGINT to the CLI's process group (what a terminal's Ctrl-C sends), its own cluster."""
    out = tmp_path / "interrupted.zarr"
    # As from a terminal: SIGINT at its default disposition in the child, whatever this process
    # inherited or was left with (a process that starts with SIGINT ignored keeps ignoring it,
    # and Python then installs no KeyboardInterrupt handler).
    sigint_here = signal.getsignal(signal.SIGINT)
    proc = subprocess.Popen([*_cli(out, sweep_checkpoint, None), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)  # fmt: skip
    while proc.poll() is None and len(store_attrs_file(out).get("landslide:regions_done", [])) < 1:  # type: ignore[arg-type]
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before Ctrl-C"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, f"rc {proc.returncode}; SIGINT here: {sigint_here!r}; {err}"
    assert err.splitlines() == ["landslide: interrupted; re-run the same command to resume"], err
    assert store_attrs_file(out)["landslide:status"] == "in_progress"
    assert not (tmp_path / ".interrupted.zarr.lock").exists()


def test_ctrl_c_during_export_then_the_same_command_finishes_the_products(
    tmp_path: Path,
    reference: Path,
    cluster: tuple[str, list[subprocess.Popen[bytes]]],
    sweep_checkpoint: Path,
) -> None:
    """Ctrl-C while ``--export`` writes (the sweep is complete): the half-written folder does not
    look complete, and re-running the same command writes the products without sweeping again."""
    out, products = tmp_path / "swept.zarr", tmp_path / "products"
    shutil.copytree(reference, out)  # the sweep finished; its export is what gets interrupted
    cmd = [*_cli(out, sweep_checkpoint, cluster[0]), "--no-progress", "--export", str(products)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    first = products / FILE_NAMES["polygons"]
    while proc.poll() is None and not first.exists():
        time.sleep(0.005)
    assert proc.poll() is None, "the export ended before Ctrl-C"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "landslide: interrupted; re-run the same command to resume", err
    written = {p.name for p in products.iterdir() if not p.name.startswith(".")}
    assert first.name in written and FILE_NAMES["complete"] not in written
    assert not products_complete(products)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "already holds this sweep, complete; writing its products" in again.stderr
    assert products_complete(products)
    assert {p.name for p in products.iterdir()} == set(FILE_NAMES.values())
    assert_same_store(out, reference)  # the store was left as it was (not counted in FIGURES: no kill)


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _plugin_loaded(name: str, dask_worker: Any = None) -> bool:
    """Whether the model plugin ``name`` has loaded its model on this worker (run via Client.run)."""
    plugin = dask_worker.plugins.get(name)
    return plugin is not None and plugin.loaded is not None


def _sha(out: Path) -> str:
    return str(open_result(out).attrs["landslide:checkpoint_sha256"])


def test_every_kill_was_survived_and_compared(request: pytest.FixtureRequest) -> None:
    """The module's totals (``bench/reliability_report.py`` prints them): each kill counted once.

    Runs last; when the kill tests were deselected there is nothing to check.
    """
    ran = {item.originalname for item in request.session.items if item.module is request.module}
    if not set(KILL_TESTS) <= ran or request.session.testsfailed:
        pytest.skip("the kill tests did not all run (or one failed) in this session")
    assert FIGURES["kills"] == len(KILL_TESTS)
    # Three kill stores, the damaged-region store and the shared-out store, each equal to the reference.
    assert FIGURES["bytes"] == 5 * STORE_BYTES
    assert FIGURES["damaged_regions"] == 3
