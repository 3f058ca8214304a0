"""Same model, same input: chips/s in a plain process and in Dask worker tasks.

Isolates what running inside a Dask worker costs the model on this machine (the end-to-end
sweep's gap to the model-only figure), and what the worker's malloc setting has to do with it:

* ``plain``: this process;
* ``dask_default``: a ``LocalCluster`` worker with Dask's nanny defaults
  (``MALLOC_TRIM_THRESHOLD_=65536``, which pins glibc's thresholds low);
* ``landslide``: a worker of :func:`pipeline.cluster.dask_client` (glibc's adaptive malloc,
  threads set before the worker starts).

Run: ``python -m bench.worker_overhead`` (paper-width U-Net, 2 threads).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.checkpoints import bench_config, random_checkpoint

#: 128-px chips per timed pass.
CHIPS = 8


def speed(checkpoint: str, threads: int, chips: int = CHIPS, passes: int = 3) -> float:
    """Best chips/s of ``passes`` timed passes over ``chips`` 128-px chips (batch 2)."""
    import numpy as np
    import torch

    from pipeline.predict import load_model

    torch.set_num_threads(threads)
    model = load_model(checkpoint, "cpu", 2)
    x = np.random.default_rng(0).random((chips, 13, 128, 128), dtype=np.float32)
    model.probabilities(x)
    best = 0.0
    for _ in range(passes):
        t = time.perf_counter()
        model.probabilities(x)
        best = max(best, chips / (time.perf_counter() - t))
    return best


def _malloc_env() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def measure(checkpoint: str, threads: int = 2, chips: int = CHIPS, rounds: int = 2) -> dict[str, Any]:
    """chips/s in each place, interleaved ``rounds`` times (best of each), and the worker envs."""
    from distributed import Client, LocalCluster

    from pipeline.cluster import ClusterSpec, client_environ_kept, dask_client, worker_env

    best = {"plain": 0.0, "dask_default": 0.0, "landslide": 0.0}
    envs: dict[str, str | None] = {}
    client_before = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    with client_environ_kept(), LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0",
        silence_logs=40, env=worker_env(threads),
    ) as cluster, Client(cluster) as default_client:  # fmt: skip
        client_leak = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        envs["dask_default"] = next(iter(default_client.run(_malloc_env).values()))
        with dask_client(ClusterSpec(n_workers=1, device="cpu")) as (ours, _):
            envs["landslide"] = next(iter(ours.run(_malloc_env).values()))
            for _ in range(rounds):
                best["plain"] = max(best["plain"], speed(checkpoint, threads, chips))
                task = default_client.submit(speed, checkpoint, threads, chips, pure=False)
                best["dask_default"] = max(best["dask_default"], task.result())
                task = ours.submit(speed, checkpoint, threads, chips, pure=False)
                best["landslide"] = max(best["landslide"], task.result())
    return {
        "threads": threads,
        "chips_per_s": best,
        "dask_default_over_plain": best["dask_default"] / best["plain"],
        "landslide_over_plain": best["landslide"] / best["plain"],
        "worker_malloc_trim_threshold": envs,
        "client_env_leaked_by_plain_localcluster": client_leak if client_before is None else None,
        "client_env_after": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    }


def main() -> None:
    """Print chips/s of the paper-width U-Net in each place."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(random_checkpoint("unet", bench_config("unet", False), Path(tmp) / "unet.safetensors"))
        for key, value in measure(ckpt).items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
