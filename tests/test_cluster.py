"""The local cluster's workers: malloc and thread settings, and the client's environment untouched."""

from __future__ import annotations

import os
import threading

import pytest

from pipeline.cluster import THREAD_VARS, ClusterSpec, dask_client, pre_spawn_env

WATCHED = ("MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED", *THREAD_VARS)


def _worker_environ() -> dict[str, str | None]:
    return {var: os.environ.get(var) for var in WATCHED}


@pytest.mark.parametrize("leaked_before", [False, True])
def test_workers_get_glibc_malloc_and_the_client_environ_stays_as_it_was(
    monkeypatch: pytest.MonkeyPatch, leaked_before: bool
) -> None:
    """Dask's nanny would set MALLOC_TRIM_THRESHOLD_=65536 in every worker and in this process."""
    if leaked_before:  # as an earlier plain LocalCluster in this process would have left it
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    else:
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    before = dict(os.environ)
    with dask_client(ClusterSpec(n_workers=1, device="cpu")) as (client, threads):
        assert threads is not None
        (env,) = client.run(_worker_environ).values()
        assert dict(os.environ) == before  # nothing the nanny wrote stays in the client
    assert dict(os.environ) == before
    assert env["MALLOC_TRIM_THRESHOLD_"] is None  # glibc's adaptive thresholds
    assert all(env[var] == str(threads) for var in THREAD_VARS)


def test_pre_spawn_env_keeps_dask_defaults_it_does_not_replace() -> None:
    env = pre_spawn_env(3)
    assert env["MALLOC_TRIM_THRESHOLD_"] is None
    assert env["OMP_NUM_THREADS"] == "3"
    assert str(pre_spawn_env(None)["OMP_NUM_THREADS"]) == "1"  # Dask's default kept for GPU workers


def test_leaving_the_cluster_keeps_what_other_threads_changed_in_the_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the nanny's variables are put back: a variable another thread set (or removed) while
    the cluster ran stays as that thread left it."""
    monkeypatch.setenv("LANDSLIDE_TEST_REMOVED", "1")
    monkeypatch.delenv("LANDSLIDE_TEST_ADDED", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)

    def other_thread() -> None:
        os.environ["LANDSLIDE_TEST_ADDED"] = "yes"
        del os.environ["LANDSLIDE_TEST_REMOVED"]

    with dask_client(ClusterSpec(n_workers=1, device="cpu")) as (client, _):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        client.run(_worker_environ)
    try:
        assert os.environ.get("LANDSLIDE_TEST_ADDED") == "yes"
        assert "LANDSLIDE_TEST_REMOVED" not in os.environ
        assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # what the nanny set is undone
    finally:
        os.environ.pop("LANDSLIDE_TEST_ADDED", None)
