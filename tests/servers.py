"""Real local servers for tests: a STAC API (``rustac serve``) and a Dask scheduler + workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: object, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not start in {timeout} s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def absolute_items(catalog_json: Path, dest: Path) -> Path:
    """Copy an ItemCollection with relative asset hrefs as absolute ``file://`` URIs (for serving).

    Plain absolute paths would be resolved against the API's self links (http) by pystac.
    """
    doc = json.loads(catalog_json.read_text())
    for feature in doc["features"]:
        for asset in feature["assets"].values():
            href = asset["href"]
            if "://" not in href and not href.startswith("/"):
                asset["href"] = (catalog_json.parent / href).resolve().as_uri()
    dest.write_text(json.dumps(doc))
    return dest


@contextmanager
def stac_api(items_file: Path) -> Iterator[str]:
    """``rustac serve ITEMS --addr 127.0.0.1:PORT``; yields the API URL."""
    exe = shutil.which("rustac", path=str(BIN)) or shutil.which("rustac")
    if exe is None:
        raise RuntimeError("rustac is not installed (pip install rustac)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "serve", str(items_file), "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: urllib.request.urlopen(url, timeout=1).status == 200, 30, "rustac serve", proc)
        yield url
    finally:
        _stop([proc])


@contextmanager
def dask_cluster_processes(n_workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1.

    Yields the scheduler address and the worker processes (so tests can kill one).
    """
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    sched = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    procs = [sched]
    try:
        _wait(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
            60,
            "scheduler",
            sched,
        )
        workers = [
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    addr,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--memory-limit",
                    "4GiB",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            for _ in range(n_workers)
        ]
        procs += workers
        from distributed import Client

        with Client(addr, timeout="30s") as client:
            client.wait_for_workers(n_workers, timeout=90)
        yield addr, workers
    finally:
        _stop(procs[::-1])
