"""Where the sweep computes: a LocalCluster, a LocalCUDACluster, or any scheduler address.

* default: a ``LocalCluster`` of worker processes on 127.0.0.1 (one thread each, torch using
  ``cores // workers`` threads, so model kernels don't oversubscribe the machine). The thread
  count travels in the workers' environment (``LANDSLIDE_TORCH_THREADS``), so it holds also
  when the client is handed to ``run_sweep`` (Dask's nanny sets ``OMP_NUM_THREADS=1``, which
  would otherwise leave a single worker using one core);
* the workers' **malloc**: Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
  (``distributed.nanny.pre-spawn-environ``). Setting it pins glibc's thresholds low: each freed
  activation buffer goes back to the OS and the next forward pass faults it in again, which
  costs the U-Net ~40 % on 2 threads (``python -m bench.worker_overhead``). Local workers get
  :data:`WORKER_MALLOC_ENV` instead: glibc's own adaptive thresholds, under which freed
  buffers are reused. Memory is not hidden from Dask: what the process holds is its resident
  set, which is what Dask's memory monitor reads. The nanny writes its pre-spawn variables into
  this process's ``os.environ`` too (every later subprocess would inherit them):
  :func:`dask_client` puts the client's environment back as it was;
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
from typing import TYPE_CHECKING

from pipeline.errors import UserError

if TYPE_CHECKING:  # dask and distributed load only when a cluster is made (a light CLI start)
    from distributed import Client, LocalCluster

#: Environment variable giving the torch intra-op threads of a worker (set by
#: :func:`dask_client` for its local workers and applied by the model plugin; Dask's nanny sets
#: ``OMP_NUM_THREADS=1`` in every worker, so without it torch would use one core per worker).
TORCH_THREADS_ENV = "LANDSLIDE_TORCH_THREADS"


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


#: No dashboard, and the scheduler's HTTP (metrics) server on an ephemeral loopback port: left at
#: its default it tries port 8787 and warns on stderr when another cluster holds it.
QUIET_SCHEDULER = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
#: glibc malloc variables of local workers (``None``: unset, glibc's adaptive default).
WORKER_MALLOC_ENV: dict[str, str | None] = {"MALLOC_TRIM_THRESHOLD_": None}
#: Thread variables OpenMP, MKL and OpenBLAS read when they load (before the worker starts).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pre_spawn_env(threads: int | None) -> dict[str, str | None]:
    """``distributed.nanny.pre-spawn-environ`` of local workers: our malloc and thread settings.

    Args:
        threads: Cores per worker for OpenMP/MKL/OpenBLAS, or None to keep Dask's ``1``.
    """
    import dask
    import distributed  # noqa: F401  (registers the distributed.* configuration defaults)

    env: dict[str, str | None] = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.update(WORKER_MALLOC_ENV)
    if threads:
        env.update({var: str(threads) for var in THREAD_VARS})
    return env


#: Variables Dask itself writes into the client's ``os.environ`` besides the pre-spawn ones: the
#: nanny's hash seed, the process-title marker and the scheduler's address.
DASK_WRITES = ("PYTHONHASHSEED", "__DASK_PARENT_PID", "DASK_SCHEDULER_ADDRESS")


def nanny_vars() -> frozenset[str]:
    """Names of the variables a local cluster writes into this process's ``os.environ``.

    The keys of the nanny's ``pre-spawn-environ`` (Dask's defaults and :func:`pre_spawn_env`'s),
    which it sets before spawning each worker, the thread variables and :data:`DASK_WRITES`.
    """
    return frozenset({*pre_spawn_env(None), *THREAD_VARS, *DASK_WRITES})


@contextmanager
def client_environ_kept(for_spawn: bool = False) -> Iterator[None]:
    """Put back, after the block, the variables Dask's nanny writes to this process's ``os.environ``.

    Only those (:func:`nanny_vars`) that changed are restored: whatever else another thread set or
    removed meanwhile stays as it is.

    Args:
        for_spawn: Also take the variables of :func:`pre_spawn_env` out of ``os.environ`` while
            the block runs (the nanny prefers a value found there over its configuration).
    """
    names = nanny_vars()
    saved = {name: os.environ.get(name) for name in names}
    if for_spawn:
        for var in (*WORKER_MALLOC_ENV, *THREAD_VARS):
            os.environ.pop(var, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if os.environ.get(name) == value:
                continue
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    import dask
    from distributed import Client, LocalCluster

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
    cluster: LocalCluster
    threads: int | None = None
    if spec.device.startswith("cuda"):
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            raise UserError("device cuda needs the gpu extra: pip install 'landslide-pipeline[gpu]'") from exc
        with (
            client_environ_kept(for_spawn=True),
            dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn_env(None)}),
        ):
            cluster = LocalCUDACluster(
                n_workers=spec.n_workers, dashboard_address=None, silence_logs=40,
                scheduler_kwargs=QUIET_SCHEDULER,
            )  # fmt: skip
    else:
        n = spec.n_workers or min(2, cpu_count())
        threads = max(1, cpu_count() // n)
        with (
            client_environ_kept(for_spawn=True),
            dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn_env(threads)}),
        ):
            cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, silence_logs=40, env=worker_env(threads),
                scheduler_kwargs=QUIET_SCHEDULER,
            )  # fmt: skip
    try:
        with client_environ_kept():  # a worker restarted by its nanny writes os.environ again
            client = Client(cluster)
            try:
                yield client, threads
            finally:
                client.close()
    finally:
        cluster.close()
