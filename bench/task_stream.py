"""``python -m bench.task_stream``: where a U-Net sweep's compute time goes, by Dask task kind.

Sweeps the demo tiled ``--reps`` x ``--reps`` (default 4: 393 km2) with a paper-width U-Net of
seeded random weights on one local worker (2 torch threads, as ``make bench``'s end-to-end
figure), records Dask's task stream and prints the compute seconds of each task prefix (model
tiles in ``overlap-predict_block``; the cube in ``cube_block``; the halo assembly in
``concatenate``/``rechunk``), their sum, the stream's span and the sweep's compute time. The
model alone is timed in the same worker first (:func:`bench.sweeps.worker_model_speed`).

It also prints the CPU seconds each process of the cluster spent during the sweep (this one,
which runs the client and the scheduler; the nanny; the worker, thread by thread): on 2 cores
every CPU second outside the worker's compute threads is taken from the model's two threads.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from distributed import get_task_stream

    from bench.checkpoints import bench_config, random_checkpoint
    from bench.scene import build_tiled_scene
    from bench.sweeps import worker_model_speed
    from pipeline.cluster import ClusterSpec, dask_client
    from pipeline.demo import scene as demo
    from pipeline.geo import BBox
    from pipeline.sweep import SweepConfig, run_sweep

    p = argparse.ArgumentParser(prog="python -m bench.task_stream", description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--block", type=int, default=2048)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="landslide-ts-") as tmp:
        work = Path(tmp)
        scene = build_tiled_scene(work / "scene", args.reps, args.reps)
        ckpt = random_checkpoint("unet", bench_config("unet", False), work / "unet.safetensors")
        out = work / "sweep.zarr"
        cfg = SweepConfig(
            bbox=BBox(*scene.bbox), start=demo.DEMO_START, end=demo.DEMO_END, out=out,
            catalog=str(scene.catalog), checkpoint=ckpt, block=args.block, batch_size=1, region_blocks=4,
            device="cpu", progress=False,
        )  # fmt: skip
        with dask_client(ClusterSpec(n_workers=1, device="cpu")) as (client, threads):
            model = client.submit(worker_model_speed, str(ckpt), 528, 1, threads, pure=False).result()
            before = _cpu_by_process()
            with get_task_stream(client) as ts:
                t0 = time.perf_counter()
                summary = run_sweep(cfg, client=client)
                wall = time.perf_counter() - t0
            after = _cpu_by_process()
        shutil.rmtree(out, ignore_errors=True)
    seconds: dict[str, float] = collections.defaultdict(float)
    starts, stops = [], []
    for task in ts.data:
        for ss in task["startstops"]:
            starts.append(ss["start"])
            stops.append(ss["stop"])
            if ss["action"] == "compute":
                key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
                seconds[str(key).rsplit("-", 1)[0]] += ss["stop"] - ss["start"]
    compute_s = summary.chips / summary.chips_per_s
    print(f"model alone in the worker: {model:.3g} chips/s; sweep: {summary.chips_per_s:.3g} chips/s "
          f"({summary.chips_per_s / model:.3f} of it), {summary.chips} chips")  # fmt: skip
    span = max(stops) - min(starts)
    print(f"sweep compute {compute_s:.2f} s, wall {wall:.2f} s; task stream span {span:.2f} s, "
          f"tasks {sum(seconds.values()):.2f} s; the model alone: {summary.chips / model:.2f} s")  # fmt: skip
    for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{s:9.3f} s  {s / compute_s:6.1%}  {name}")
    print(f"CPU seconds during the sweep ({wall:.2f} s wall x {os.cpu_count()} cores):")
    for key, (label, threads) in after.items():
        old = before.get(key, (label, {}))[1]
        spent = {tid: t - old.get(tid, 0.0) for tid, t in threads.items()}
        busy = sorted(((t, tid) for tid, t in spent.items() if t > 0.005), reverse=True)
        print(f"{sum(spent.values()):9.3f} s  {label}; threads above 5 ms (* its main thread): "
              + ", ".join(f"{t:.2f}{'*' if f' {tid}' in label else ''}" for t, tid in busy))
    return 0


def _cpu_by_process() -> dict[int, tuple[str, dict[int, float]]]:
    """CPU seconds (user + system) of this process and its descendants, per thread."""
    import psutil

    me = psutil.Process()
    out: dict[int, tuple[str, dict[int, float]]] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            depth = 0 if proc.pid == me.pid else (1 if proc.ppid() == me.pid else 2)
            label = ("this process (client, scheduler, nanny)", "its child", "a grandchild")[depth]
            threads = {t.id: t.user_time + t.system_time for t in proc.threads()}
            out[proc.pid] = (f"{label} {proc.pid}", threads)
        except psutil.NoSuchProcess:
            continue
    return out


if __name__ == "__main__":
    raise SystemExit(main())
