"""``python -m bench.run``: every figure of the throughput work in one run, with targets.

Usage::

    python -m bench.run                      # full bench (~15-30 min on a quiet 2-core CPU)
    python -m bench.run --models unet        # U-Net figures only (skips Clay-large, the slowest)
    python -m bench.run --quick              # tiny models and scenes: a smoke test of the code

Writes ``bench/results/<host-kind>.json`` and ``.md``, prints the table, and states each target
as met or missed with the measured cause of a miss (:mod:`bench.targets`). Models have seeded
random weights: the figures are throughput, never skill. Every timed phase records the cores
other processes kept busy meanwhile (the machine may be shared). On a CUDA machine the models
run with bf16 autocast and the sweeps use a ``dask_cuda.LocalCUDACluster``; the GPU run proper
is ``bench/gpu/run.sh``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench import report, targets
from bench.ceiling import matmul_gflops
from bench.checkpoints import BENCH_MODELS, bench_config, random_checkpoint
from bench.e2e import MAIN_REPS, Timing, end_to_end_figures, model_end_to_end, time_model_in_child
from bench.machine import host_kind, machine, versions
from bench.memory import MEMORY_SCALES, PeakTreeRSS, memory_scaling
from bench.peers import map_blocks_peer, plain_loop
from bench.scene import build_tiled_scene
from pipeline.tiling import grid_for_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: ``--quick``: the demo scene itself, and 1 / 2 / 4 copies for the memory figures.
QUICK_MEMORY_SCALES = {"x1": (1, 1), "x2": (1, 2), "x4": (2, 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models and scenes (smoke test)")
    p.add_argument("--models", nargs="+", default=list(BENCH_MODELS), choices=BENCH_MODELS,
                   help="models to measure (default all; the U-Net is always measured)")  # fmt: skip
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where <host-kind>.json/.md go")
    p.add_argument("--host-kind", default=None, help="override the detected host kind (file name)")
    p.add_argument("--block", type=int, default=2048, help="sweep block size in pixels")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--skip-map-blocks", action="store_true", help="leave out the map_blocks peer")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def data_path_figures(quick: bool, work: Path) -> dict[str, Any]:
    """The data-path figures of :mod:`bench.data_path` (issues 12 and 19).

    One and four acquisitions on the all-10 m scene and on the Planetary-Computer-shaped scene
    (``..._native``, the headline), each with ``chips_per_s_per_core``, ``decode_fraction`` and
    ``split_fraction``, and the native scene's speed over the all-10 m scene's in the same run.
    """
    from bench.data_path import measure_data_path

    d: dict[str, Any] = measure_data_path(work / "data-path", quick=quick).as_dict()

    def split(key: str) -> str:
        parts = ", ".join(f"{k} {v:.0%}" for k, v in d[key].get("split_fraction", {}).items() if v >= 0.005)
        run = d[key]
        kernel = run.get("system_s", 0.0) / run["cpu_s"] if run.get("cpu_s") else 0.0
        return f"{parts}; the timed run's CPU time {kernel:.0%} in the kernel"

    out: dict[str, Any] = {}
    # the all-10 m scene's figures, then (when measured) the Planetary-Computer-shaped scene's
    scenes = [("", "one", "four", "")] + (
        [("_native", "native", "native_four", "native, ")] if "native" in d else []
    )
    for suffix, one, four, label in scenes:
        out |= {
            f"chips_per_s_per_core{suffix}": d[one]["chips_per_s_per_core"],
            f"chips_per_s_per_core{suffix}_4acq": d[four]["chips_per_s_per_core"],
            f"decode_share{suffix}": d[one]["decode_fraction"],
            f"decode_share{suffix}_4acq": d[four]["decode_fraction"],
            f"direct_over_odc_stac{suffix}": d[one]["direct_over_odc_stac"],
            f"direct_over_odc_stac{suffix}_4acq": d[four]["direct_over_odc_stac"],
            f"cause{suffix}": f"cost split, {label}one acquisition: {split(one)}",
            f"cause{suffix}_4acq": f"cost split, {label}four acquisitions: {split(four)}",
        }
    if "native" in d:
        out |= {
            "native_over_ten": d["native_over_ten"]["one"],
            "native_over_ten_4acq": d["native_over_ten"]["four"],
        }
    out["detail"] = d
    return out


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Measure everything and return the result dictionary."""
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    quick = args.quick
    names = ["unet", *[m for m in BENCH_MODELS if m in args.models and m != "unet"]]
    result: dict[str, Any] = {
        "host_kind": args.host_kind or host_kind(),
        "command": "python -m bench.run " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "versions": versions(),
        "machine": machine(),
        "note": "models have seeded random weights: throughput only, never skill",
    }
    _log(f"{result['host_kind']}: ceiling")
    n = 1024 if quick else 4096
    with PeakTreeRSS() as monitor:
        result["ceiling_gflops"] = matmul_gflops(n, repeats=3 if quick else 6, device=device)
    result["ceiling_foreign_cores"] = monitor.foreign_cores
    if cuda:
        result["ceiling_bf16_gflops"] = matmul_gflops(8192, repeats=6, dtype=torch.bfloat16, device=device)

    main_scene = build_tiled_scene(work / "scene-main", *((1, 1) if quick else MAIN_REPS))
    ckpts = {name: work / f"{name}.safetensors" for name in BENCH_MODELS}
    configs = {name: bench_config(name, quick) for name in BENCH_MODELS}
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64) if cuda else (1, 2, 4, 8)
    min_s, max_iters = (0.0, 1) if quick else (4.0, 4)
    tile = grid_for_model("unet", args.block).chip

    models: dict[str, Any] = {}
    _log(f"model unet, then end-to-end unet ({main_scene.area_km2:.1f} km2)")
    # Each model is written and timed in a child process (bench.e2e): this process never holds
    # one, so the client's memory in a sweep's peak is the sweep's own. Three U-Net sweeps, each
    # on a fresh cluster with the model timed in its worker first: the ratio of one such pair
    # moved by +-4 % from run to run on this machine; the median run is reported.
    threads = torch.get_num_threads()
    timing = Timing(ceiling_gflops=result["ceiling_gflops"], batches=batches, min_s=min_s,
                    max_iters=max_iters, block=args.block, threads=threads)  # fmt: skip
    unet, runs = model_end_to_end("unet", configs["unet"], ckpts["unet"], main_scene, work, timing,
                                  sweeps=1 if quick else 3)  # fmt: skip
    models["unet"] = asdict(unet)
    e2e: dict[str, Any] = {}
    runs.sort(key=lambda r: r.chips_per_s / (r.worker_model_chips_per_s or 1.0))
    main = runs[len(runs) // 2]
    e2e["unet"] = end_to_end_figures(main, unet.batch, unet.tile_chips_per_s)
    ratios = [r.chips_per_s / (r.worker_model_chips_per_s or 1.0) for r in runs]
    e2e["unet"]["end_to_end_over_model_runs"] = ratios

    _log("peers")
    loop = plain_loop(main_scene, ckpts["unet"], work / "loop.tif")
    peers = {"loop": loop}
    if not args.skip_map_blocks:
        peers["map_blocks"] = map_blocks_peer(main_scene, ckpts["unet"], work / "map_blocks.tif", workers=2)
    result["peers"] = {name: {**asdict(p), "chips_per_s": p.chips_per_s, "km2_per_s": p.km2_per_s}
                       for name, p in peers.items()}  # fmt: skip
    # Chips/s of the sweep counts its tiles' input (overlap included); km2/s is the area delivered.
    for name, p in peers.items():
        result[f"speedup_vs_{name}"] = main.chips_per_s / p.chips_per_s
        result[f"speedup_vs_{name}_km2"] = main.km2_per_s / p.km2_per_s

    _log("worker overhead")
    from bench.worker_overhead import measure as worker_overhead

    small = 4 if quick else 8
    result["worker_overhead"] = worker_overhead(str(ckpts["unet"]), threads, small, 1 if quick else 2)
    gc.collect()

    _log("memory with area (tiny U-Net)")
    tiny = random_checkpoint("unet", bench_config("unet", True), work / "tiny-unet.safetensors")
    result["memory"] = memory_scaling(work, tiny, QUICK_MEMORY_SCALES if quick else MEMORY_SCALES)

    _log("data path")
    result["data_path"] = data_path_figures(quick, work)

    for name in names[1:]:
        _log(f"model {name}" + (", then end-to-end" if name == "hybrid" else ""))
        if name == "hybrid":
            speed, (run_h,) = model_end_to_end(name, configs[name], ckpts[name], main_scene, work, timing)
            e2e["hybrid"] = end_to_end_figures(run_h, speed.batch, speed.chips_per_s)
        else:
            speed = time_model_in_child(name, configs[name], ckpts[name], timing)
        models[name] = asdict(speed)
        ckpts[name].unlink()
    # The ceiling is the best of several measurements spread over the run (the machine may be
    # shared): re-measure once more and express every mfu against the best.
    result["ceiling_gflops"] = max(result["ceiling_gflops"], matmul_gflops(n, repeats=6, device=device))
    for m in models.values():
        m["mfu"] = m["chips_per_s"] * m["gflop_per_chip"] / result["ceiling_gflops"]
    result["models"] = models
    result["end_to_end_models"] = e2e
    result["end_to_end"] = {"model": "unet", **e2e["unet"]}
    result["settings"] = {"quick": quick, "workers": 1, "block": args.block, "region_blocks": 4,
                          "unet_tile": tile, "models": names, "main_reps": list(MAIN_REPS),
                          "device": device, "torch_threads_main": torch.get_num_threads()}  # fmt: skip
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["duration_s"] = time.perf_counter() - t_start
    result["targets"] = targets.evaluate(result)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.run``."""
    args = parse_args(argv)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="landslide-bench-") as tmp:
            result = run(args, Path(tmp))
    js, md = report.write(result, args.out_dir)
    print(report.markdown(result))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
