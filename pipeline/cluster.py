"""Where the sweep computes: a LocalCluster, a LocalCUDACluster, or any scheduler address.

* default: a ``LocalCluster`` of worker processes on 127.0.0.1 (one thread each, torch using
  ``cores // workers`` threads, so model kernels don't oversubscribe the machine). The thread
  count travels in the workers' environment (``LANDSLIDE_TORCH_THREADS``), so it holds also
  when the client is handed to ``run_sweep`` (Dask's nanny sets ``OMP_NUM_THREADS=1``, which
  would otherwise leave a single worker using one core);
* ``--scheduler ADDRESS``: join an existing cluster (``dask scheduler`` + ``dask worker``
  processes on any number of machines) — the way past one machine;
* a CUDA device with the ``gpu`` extra installed: a ``dask_cuda.LocalCUDACluster`` with one
  worker per GPU. dask-cuda does not import without CUDA, so it is imported only here, only then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from distributed import Client, LocalCluster

from pipeline.errors import UserError
from pipeline.predict import TORCH_THREADS_ENV

#: No dashboard, and the scheduler's HTTP (metrics) server on an ephemeral loopback port: left at
#: its default it tries port 8787 and warns on stderr when another cluster holds it.
QUIET_SCHEDULER = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}


@dataclass(frozen=True)
class ClusterSpec:
    """How to get a Dask client.

    Attributes:
        scheduler: Address of an existing scheduler (``tcp://host:8786``), or None for local.
        n_workers: Local worker processes (None: ``min(2, cores)`` on CPU, one per GPU).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    scheduler: str | None = None
    n_workers: int | None = None
    device: str = "cpu"


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def worker_env(threads: int) -> dict[str, str]:
    """Environment of local worker processes: ``threads`` for torch, OpenMP and oneDNN.

    Dask's nanny pins ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS) in every worker so that numpy
    does not oversubscribe. Each local worker owns ``threads`` cores, so its OpenMP/oneDNN
    kernels may use them; torch's own count is applied by the model plugin.
    """
    n = str(threads)
    return {TORCH_THREADS_ENV: n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


@contextmanager
def dask_client(spec: ClusterSpec) -> Iterator[tuple[Client, int | None]]:
    """A connected client and the torch threads each worker should use (None: leave as is).

    Raises:
        UserError: If the scheduler cannot be reached.
    """
    if spec.scheduler:
        try:
            client = Client(spec.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach Dask scheduler at {spec.scheduler}: {exc}") from exc
        try:
            yield client, None
        finally:
            client.close()
        return
    if spec.device.startswith("cuda"):
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            raise UserError("device cuda needs the gpu extra: pip install 'landslide-pipeline[gpu]'") from exc
        cluster = LocalCUDACluster(
            n_workers=spec.n_workers, dashboard_address=None, silence_logs=40,
            scheduler_kwargs=QUIET_SCHEDULER,
        )  # fmt: skip
        threads: int | None = None
    else:
        n = spec.n_workers or min(2, cpu_count())
        threads = max(1, cpu_count() // n)
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=40, env=worker_env(threads),
            scheduler_kwargs=QUIET_SCHEDULER,
        )  # fmt: skip
    client = Client(cluster)
    try:
        yield client, threads
    finally:
        client.close()
        cluster.close()
