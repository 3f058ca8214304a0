"""GPU figures in one run of a few minutes: models, data path, end-to-end sweeps, utilisation.

``python -m bench.gpu.measure`` (what ``bench/gpu/run.sh`` calls) measures, each with the GPU's
utilisation sampled meanwhile (NVML):

* model-only chips/s of the U-Net and the hybrid (paper configurations, random weights):
  fp32 vs bf16 autocast, channels-last, a batch sweep, and ``torch.compile`` where the time
  budget allows; the raw forward on device tensors and the production path
  (:meth:`pipeline.predict.LoadedModel.probabilities`, host arrays in and out);
* the data path (cube -> band stack, no model) with all cores, Dask's threaded scheduler;
* end-to-end sweeps (:func:`pipeline.sweep.run_sweep`) on a ``dask_cuda.LocalCUDACluster``
  (or one local worker process when dask-cuda cannot start) over a tiled scene.

Writes ``<out>/<gpu-kind>.json``. ``--dry-run`` runs the same code on the CPU with tiny models
and scenes (CI runs it, so the script cannot rot).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


class GpuUtil:
    """Average GPU utilisation (%) and peak memory (MiB) sampled by NVML in a thread."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.samples: list[int] = []
        self.mem_mib = 0.0
        self._stop = threading.Event()
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml: Any = pynvml
        except Exception:  # no NVML (CPU dry run): utilisation stays None
            self._handle = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            self.samples.append(int(rates.gpu))
            self.mem_mib = max(self.mem_mib, mem.used / 2**20)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> GpuUtil:
        if self._handle is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._handle is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        """Mean utilisation in percent, or None without NVML."""
        return float(np.mean(self.samples)) if self.samples else None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str, min_s: float, max_iters: int) -> float:
    """Best seconds of one call of ``fn`` (after one warm-up call)."""
    fn()
    _sync(device)
    best, spent, n = float("inf"), 0.0, 0
    while n < max_iters and (spent < min_s or n == 0):
        t = time.perf_counter()
        fn()
        _sync(device)
        dt = time.perf_counter() - t
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def model_figures(
    name: str,
    ckpt: Path,
    device: str,
    batches: tuple[int, ...],
    size: int,
    compile_ok: bool,
    min_s: float,
    max_iters: int,
    deadline: float,
) -> dict[str, Any]:
    """chips/s of one model: fp32 / bf16, channels-last, batch sweep, compile, production path."""
    from pipeline.predict import load_model

    loaded = load_model(ckpt, device, batches[-1], optimize=False)
    model = loaded.model
    c = len(loaded.meta.bands)
    out: dict[str, Any] = {"size": size, "raw": {}, "util": {}}
    for dtype in ("fp32", "bf16"):
        for layout in ("channels_last", "contiguous"):
            for b in batches:
                if time.perf_counter() > deadline:
                    out["truncated"] = True
                    break
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                x = torch.randn(b, c, size, size, device=device).contiguous(memory_format=fmt)

                def fwd(x: torch.Tensor = x, dtype: str = dtype) -> object:
                    with (
                        torch.inference_mode(),
                        torch.autocast(device, torch.bfloat16, enabled=dtype == "bf16"),
                    ):
                        return model(x)

                with GpuUtil() as util:
                    dt = _timed(fwd, device, min_s, max_iters)
                key = f"{dtype}/{layout}/b{b}"
                out["raw"][key] = b * (size / 128) ** 2 / dt
                out["util"][key] = util.mean
    best = max(out["raw"], key=lambda k: out["raw"][k])
    out["best"] = {"config": best, "chips_per_s": out["raw"][best]}
    b = int(best.rsplit("/b", 1)[1])
    if compile_ok and time.perf_counter() < deadline:
        try:
            compiled = torch.compile(model)
            x = torch.randn(b, c, size, size, device=device).contiguous(memory_format=torch.channels_last)

            def cfwd() -> object:
                with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=device == "cuda"):
                    return compiled(x)

            with GpuUtil() as util:
                dt = _timed(cfwd, device, min_s, max_iters)
            out["compiled"] = {"batch": b, "chips_per_s": b * (size / 128) ** 2 / dt, "util": util.mean}
        except Exception as exc:  # compile is an option, not a requirement
            out["compiled"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    # The production path: host float32 arrays in, probabilities out (what the sweep runs).
    loaded.batch_size = -(-b * size * size // 128**2)  # b tiles per pass
    host = np.random.default_rng(0).random((b * 4, c, size, size), dtype=np.float32)
    with GpuUtil() as util:
        dt = _timed(lambda: loaded.probabilities(host), device, min_s, max_iters)
    out["production"] = {"batch": b, "chips_per_s": len(host) * (size / 128) ** 2 / dt, "util": util.mean}
    return out


def data_path_figures(scene: Any, threads: int) -> dict[str, Any]:
    """The data path alone (cube -> band stack), Dask's threaded scheduler on ``threads`` cores."""
    import dask

    from pipeline import catalog, cube
    from pipeline.bands import SWEEP_BANDS
    from pipeline.demo import scene as demo
    from pipeline.sweep import DEM_WINDOW, area_geobox

    cat = catalog.open_catalog(str(scene.catalog))
    s2 = cat.search(cube.S2_COLLECTION, scene.bbox, demo.DEMO_START, demo.DEMO_END)
    dem = cat.search(cube.DEM_COLLECTION, scene.bbox, *DEM_WINDOW)
    gbox = area_geobox(scene.bbox)
    stack = cube.stack_bands(cube.build_cube(s2, dem, gbox, chunk=1024), SWEEP_BANDS)
    t = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=threads):
        stack.sum().compute()
    dt = time.perf_counter() - t
    chips = stack.shape[1] * stack.shape[2] / 128**2
    return {"threads": threads, "chips_per_s": chips / dt, "chips_per_s_per_core": chips / dt / threads,
            "seconds": dt, "chips": chips}  # fmt: skip


def sweep_figures(scene: Any, ckpt: Path, work: Path, device: str, batch: int) -> dict[str, Any]:
    """One end-to-end sweep on a LocalCUDACluster (or one local worker), with GPU utilisation."""
    from pipeline.cluster import ClusterSpec, dask_client
    from pipeline.demo import scene as demo
    from pipeline.errors import UserError
    from pipeline.geo import BBox
    from pipeline.sweep import SweepConfig, run_sweep

    out = work / f"{ckpt.stem}.zarr"
    cfg = SweepConfig(bbox=BBox(*scene.bbox), start=demo.DEMO_START, end=demo.DEMO_END, out=out,
                      catalog=str(scene.catalog), checkpoint=ckpt, batch_size=batch, device=device,
                      progress=False)  # fmt: skip
    cluster = "LocalCUDACluster" if device == "cuda" else "LocalCluster"
    try:
        cm = dask_client(ClusterSpec(n_workers=1, device=device))
        client, _ = cm.__enter__()
    except (UserError, ImportError, RuntimeError) as exc:  # dask-cuda missing or not starting
        cluster = f"LocalCluster (LocalCUDACluster failed: {exc})"[:300]
        cm = dask_client(ClusterSpec(n_workers=1, device="cpu"))
        client, _ = cm.__enter__()
    try:
        with GpuUtil() as util:
            summary = run_sweep(cfg, client=client)
    finally:
        cm.__exit__(None, None, None)
        shutil.rmtree(out, ignore_errors=True)
    return {"cluster": cluster, "area_km2": summary.area_km2, "chips": summary.chips,
            "chips_per_s": summary.chips_per_s, "overlap_factor": summary.overlap_factor,
            "wall_s": summary.wall_s, "gpu_util_mean": util.mean,
            "gpu_mem_peak_mib": util.mem_mib}  # fmt: skip


def run(args: argparse.Namespace, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every measurement, each guarded by the time budget (none in a dry run).

    ``save`` is called with the result after each phase, so a run killed at its time limit
    still leaves what it measured.
    """
    from bench.checkpoints import bench_config, random_checkpoint
    from bench.machine import host_kind, machine, versions
    from bench.scene import build_tiled_scene
    from pipeline.tiling import grid_for_model

    t0 = time.perf_counter()
    deadline = t0 + (float("inf") if args.dry_run else args.budget_s)
    device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    quick = args.dry_run
    result: dict[str, Any] = {"host_kind": args.host_kind or host_kind(), "device": device,
                              "dry_run": quick, "machine": machine(), "versions": versions(),
                              "command": "python -m bench.gpu.measure " + " ".join(sys.argv[1:]),
                              "note": "models have seeded random weights: throughput only"}  # fmt: skip
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    work = Path(tempfile.mkdtemp(prefix="landslide-gpu-"))
    try:
        models: dict[str, Any] = {}
        unet_tile = grid_for_model("unet", 2048).chip
        plans: dict[str, tuple[tuple[int, ...], int]] = {
            "unet": ((1, 2) if quick else (16, 64, 256), 128 if quick else unet_tile),
            "hybrid": ((1, 2) if quick else (8, 32, 128), 128),
        }
        ckpts = {}
        for name, (batches, size) in plans.items():
            ckpts[name] = random_checkpoint(name, bench_config(name, quick), work / f"{name}.safetensors")
            if size > 128:  # same pixels per batch on tiles
                batches = tuple(max(1, b * 128 * 128 // (size * size)) for b in batches)
            _log(f"model {name} ({size} px, batches {batches})")
            share = t0 + args.budget_s * (0.3 if name == "unet" else 0.5) if not quick else deadline
            models[name] = model_figures(name, ckpts[name], device, tuple(dict.fromkeys(batches)), size,
                                         compile_ok=device == "cuda", min_s=0.0 if quick else 1.0,
                                         max_iters=1 if quick else 10, deadline=share)  # fmt: skip
            result["models"] = models
            save(result)
        reps = (1, 1) if quick else (args.scene_reps, args.scene_reps)
        _log(f"scene {reps}")
        scene = build_tiled_scene(work / "scene", *reps)
        result["scene"] = {"reps": list(reps), "area_km2": scene.area_km2}
        _log("data path")
        result["data_path"] = data_path_figures(scene, os.cpu_count() or 1)
        save(result)
        result["end_to_end"] = {}
        for name in ("unet", "hybrid"):
            if time.perf_counter() > deadline - (0 if quick else 60):
                result["end_to_end"][name] = {"skipped": "time budget"}
                continue
            _log(f"sweep {name}")
            batch = 8 if quick else 64
            result["end_to_end"][name] = sweep_figures(scene, ckpts[name], work, device, batch)
            model_best = models[name]["production"]["chips_per_s"]
            result["end_to_end"][name]["over_model_production"] = (
                result["end_to_end"][name]["chips_per_s"] / model_best
            )
            save(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["duration_s"] = time.perf_counter() - t0
    return result


def _log(msg: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.gpu.measure [--dry-run] [--out DIR]``."""
    p = argparse.ArgumentParser(prog="python -m bench.gpu.measure", description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny models and scene (CI)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of <gpu-kind>.json")
    p.add_argument("--host-kind", default=None, help="file name (default: detected, e.g. gpu-h200)")
    p.add_argument("--budget-s", type=float, default=420.0, help="time budget of the measurements")
    p.add_argument("--scene-reps", type=int, default=8, help="demo scene copies per side (8: 1,573 km2)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def save(result: dict[str, Any]) -> None:
        path = args.out / f"{result['host_kind']}.json"
        path.write_text(json.dumps({**result, "complete": False}, indent=1) + "\n")

    result = run(args, save)
    path = args.out / f"{result['host_kind']}.json"
    path.write_text(json.dumps({**result, "complete": True}, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("host_kind", "device", "duration_s")}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
