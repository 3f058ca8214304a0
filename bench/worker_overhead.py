"""Same model, same input: chips/s in a plain process, a spawned child and a Dask task.

Isolates what running inside a Dask worker costs the model on this machine (the end-to-end
sweep's gap to the model-only figure). Run: ``python -m bench.worker_overhead``.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.checkpoints import bench_config, random_checkpoint

CHIPS = 16


def _speed(checkpoint: str, threads: int) -> float:
    import numpy as np
    import torch

    from pipeline.predict import load_model

    torch.set_num_threads(threads)
    model = load_model(checkpoint, "cpu", 2)
    x = np.random.default_rng(0).random((CHIPS, 13, 128, 128), dtype=np.float32)
    model.probabilities(x)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        model.probabilities(x)
        best = max(best, CHIPS / (time.perf_counter() - t))
    return best


def _child(q: Any, checkpoint: str, threads: int) -> None:
    q.put(_speed(checkpoint, threads))


def main() -> None:
    """Print chips/s of the paper-width U-Net for each place and thread count."""
    from pipeline.cluster import ClusterSpec, dask_client

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(random_checkpoint("unet", bench_config("unet", False), Path(tmp) / "unet.safetensors"))
        ctx = mp.get_context("spawn")
        with dask_client(ClusterSpec(n_workers=1, device="cpu")) as (client, _):
            for threads in (1, 2):
                q = ctx.Queue()
                p = ctx.Process(target=_child, args=(q, ckpt, threads))
                p.start()
                child = q.get()
                p.join()
                plain = _speed(ckpt, threads)
                task = client.submit(_speed, ckpt, threads, pure=False).result()
                print(
                    f"threads {threads}: plain process {plain:.2f} chips/s, spawned child {child:.2f}, "
                    f"Dask worker task {task:.2f} ({task / plain:.2f} of plain)"
                )


if __name__ == "__main__":
    main()
