"""``python -m bench.run``: ceiling, models, end to end, peers, scaling and workers in one run.

Usage::

    python -m bench.run              # full bench (~10-25 min on a 2-core CPU)
    python -m bench.run --quick      # tiny models and scenes (< 2 min): a smoke test of the code

Writes ``bench/results/<host-kind>.json`` and ``.md`` and prints the table. Models have seeded
random weights: the figures are throughput, never skill. On a CUDA machine the models run with
bf16 autocast and channels-last (:mod:`pipeline.predict`), the batch sweep goes higher, the bf16
matmul ceiling is added and the sweeps use a ``dask_cuda.LocalCUDACluster``.
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

from bench import report
from bench.ceiling import matmul_gflops
from bench.checkpoints import BENCH_MODELS, bench_config, random_checkpoint
from bench.machine import host_kind, machine, versions
from bench.memory import PeakTreeRSS
from bench.model_speed import measure_model
from bench.peers import map_blocks_peer, plain_loop
from bench.scene import BenchScene, build_tiled_scene
from bench.sweeps import SweepRun, bench_sweep

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Copies of the demo scene (reps_y, reps_x) for the scaling areas x1, x4, x16.
SCALES = {"x1": (1, 1), "x4": (2, 2), "x16": (4, 4)}
#: The end-to-end, peer and worker measurements use the x4 scene (2 x 2 demo scenes, ~98 km2).
MAIN_SCALE = "x4"
#: ``--quick``: the demo scene itself for x1 and x4 (one sweep), 1 x 2 copies for x16.
QUICK_SCALES = {"x1": (1, 1), "x4": (1, 1), "x16": (1, 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models and scenes (smoke test, < 2 min)")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where <host-kind>.json/.md go")
    p.add_argument("--host-kind", default=None, help="override the detected host kind (file name)")
    p.add_argument("--workers", type=int, default=None, help="sweep worker processes (default 1)")
    p.add_argument("--block", type=int, default=2048, help="sweep block size in pixels")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--skip-hybrid-sweep", action="store_true", help="end to end for the U-Net only")
    return p.parse_args(argv)


def _sweep_dict(run: SweepRun) -> dict[str, Any]:
    return {
        "km2_per_s": run.km2_per_s, "chips_per_s": run.chips_per_s, "overlap_factor": run.overlap_factor,
        "s_per_km2": run.s_per_km2, "peak_rss_mb": run.peak_rss_mb, "area_km2": run.area_km2,
        "chips": run.chips, "compute_s": run.compute_s, "wall_s": run.wall_s, "workers": run.workers,
        "block": run.block, "foreign_cores": run.foreign_cores,
    }  # fmt: skip


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Measure everything and return the result dictionary."""
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    quick = args.quick
    workers = args.workers or 1
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

    scales = QUICK_SCALES if quick else SCALES
    by_reps: dict[tuple[int, int], BenchScene] = {}
    for reps in scales.values():
        if reps not in by_reps:
            by_reps[reps] = build_tiled_scene(work / f"scene-{reps[0]}x{reps[1]}", *reps)
    scenes = {key: by_reps[reps] for key, reps in scales.items()}
    main_scene = scenes[MAIN_SCALE]
    ckpts = {name: work / f"{name}.safetensors" for name in BENCH_MODELS}
    configs = {name: bench_config(name, quick) for name in BENCH_MODELS}
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64) if cuda else (1, 2, 4, 8)
    min_s, max_iters = (0.0, 1) if quick else (4.0, 4)

    models: dict[str, Any] = {}
    _log("model unet")
    random_checkpoint("unet", configs["unet"], ckpts["unet"])
    unet = measure_model("unet", configs["unet"], ckpts["unet"], result["ceiling_gflops"],
                         batches + ((16,) if not cuda else ()), min_s, max_iters * 2)  # fmt: skip
    models["unet"] = asdict(unet)
    batch = unet.batch

    _log("scaling + end-to-end unet")
    scaling: dict[str, Any] = {}
    sweeps: dict[str, SweepRun] = {}
    for key, sc in scenes.items():
        same = [k for k in sweeps if scenes[k] is sc]  # quick mode reuses scenes
        if same:
            sweeps[key] = sweeps[same[0]]
        else:
            _log(f"sweep unet {key} ({sc.area_km2:.1f} km2)")
            sweeps[key] = bench_sweep(sc, ckpts["unet"], work / f"unet-{key}.zarr",
                                      workers=workers, block=args.block, batch_size=batch)  # fmt: skip
        scaling[key] = {**_sweep_dict(sweeps[key]), "reps": list(scales[key])}
    result["scaling"] = scaling
    result["memory_growth_16x"] = scaling["x16"]["peak_rss_mb"] / scaling["x1"]["peak_rss_mb"]
    result["time_per_km2_16x_over_1x"] = scaling["x16"]["s_per_km2"] / scaling["x1"]["s_per_km2"]

    e2e: dict[str, Any] = {}
    main = sweeps[MAIN_SCALE]
    e2e["unet"] = {**_sweep_dict(main), "batch": batch,
                   "end_to_end_over_model": main.chips_per_s / unet.by_batch[batch]}  # fmt: skip

    _log("workers")
    result["workers"] = {}
    for n_workers in (1, 2):
        run_w = main if n_workers == workers else bench_sweep(
            main_scene, ckpts["unet"], work / f"unet-w{n_workers}.zarr",
            workers=n_workers, block=args.block, batch_size=batch,
        )  # fmt: skip
        result["workers"][str(n_workers)] = {"chips_per_s": run_w.chips_per_s, **_sweep_dict(run_w)}

    _log("peers")
    loop = plain_loop(main_scene, ckpts["unet"], work / "loop.tif")
    mapped = map_blocks_peer(main_scene, ckpts["unet"], work / "map_blocks.tif", workers=2)
    result["peers"] = {name: {**asdict(p), "chips_per_s": p.chips_per_s, "km2_per_s": p.km2_per_s}
                       for name, p in (("loop", loop), ("map_blocks", mapped))}  # fmt: skip
    result["speedup_vs_loop"] = main.chips_per_s / loop.chips_per_s
    result["speedup_vs_map_blocks"] = main.chips_per_s / mapped.chips_per_s
    result["speedup_vs_loop_km2"] = main.km2_per_s / loop.km2_per_s
    result["speedup_vs_map_blocks_km2"] = main.km2_per_s / mapped.km2_per_s
    gc.collect()

    for name in ("hybrid", "clay"):
        _log(f"model {name}")
        random_checkpoint(name, configs[name], ckpts[name])
        ceiling = result["ceiling_gflops"]
        speed = measure_model(name, configs[name], ckpts[name], ceiling, batches, min_s, max_iters)
        models[name] = asdict(speed)
        gc.collect()
        if name == "hybrid" and not args.skip_hybrid_sweep:
            _log("end-to-end hybrid")
            run_h = bench_sweep(main_scene, ckpts["hybrid"], work / "hybrid.zarr",
                                workers=workers, block=args.block, batch_size=speed.batch)  # fmt: skip
            e2e["hybrid"] = {**_sweep_dict(run_h), "batch": speed.batch,
                             "end_to_end_over_model": run_h.chips_per_s / speed.chips_per_s}  # fmt: skip
        ckpts[name].unlink()
    # The ceiling is the best of several measurements spread over the run (the machine may be
    # shared): re-measure once more and express every mfu against the best.
    result["ceiling_gflops"] = max(result["ceiling_gflops"], matmul_gflops(n, repeats=6, device=device))
    for m in models.values():
        m["mfu"] = m["chips_per_s"] * m["gflop_per_chip"] / result["ceiling_gflops"]
    result["models"] = models
    result["end_to_end_models"] = e2e
    result["end_to_end"] = {"model": "unet", **e2e["unet"]}
    result["settings"] = {"quick": quick, "workers": workers, "block": args.block, "region_blocks": 4,
                          "overlap": 8, "scales": {k: list(v) for k, v in scales.items()},
                          "main_scale": MAIN_SCALE, "device": device,
                          "torch_threads_main": torch.get_num_threads()}  # fmt: skip
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["duration_s"] = time.perf_counter() - t_start
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
