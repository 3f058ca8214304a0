"""Real local servers for tests: a STAC API (``rustac serve``), a Dask scheduler + workers, and an
HTTP file server standing in for blob storage (Range requests, injected 503s, expiring tokens)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

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


# ---------------------------------------------------------------------------------------------
# Blob storage stand-in: a real HTTP file server with Range requests, failures and tokens


@dataclass
class BlobRules:
    """What the test HTTP server does to requests (mutable while it runs; guarded by ``lock``).

    Attributes:
        fail_first: Path -> number of requests still to answer with 503 (counts down).
        always_fail: Path substrings answered with 503 forever (a scene that stays unreadable).
        fail_every: Answer every n-th request (over all paths) with 503; 0 for never.
        max_consecutive: Transient failures (``fail_first``, ``fail_every``) never hit one path
            more than this many times in a row, so a client with more retries always gets
            through, whatever the interleaving of concurrent requests.
        require_token: Reject requests without ``token`` and a future ``exp`` (403).
        tokens_seen: Every distinct accepted token.
        requests: Count of requests by path (after rule checks).
        failures: Number of 503 answers given.
        expired: Number of 403 answers given for expired or missing tokens.
    """

    fail_first: dict[str, int] = field(default_factory=dict)
    always_fail: set[str] = field(default_factory=set)
    fail_every: int = 0
    max_consecutive: int = 3
    require_token: bool = False
    tokens_seen: set[str] = field(default_factory=set)
    requests: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    expired: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _count: int = 0
    _streak: dict[str, int] = field(default_factory=dict)

    def verdict(self, path: str, query: dict[str, str]) -> int:
        """HTTP status to answer with before serving (200: serve the file)."""
        with self.lock:
            self._count += 1
            if self.require_token:
                token, exp = query.get("token"), query.get("exp")
                if not token or not exp or float(exp) < time.time():
                    self.expired += 1
                    return 403
                self.tokens_seen.add(token)
            if any(s in path for s in self.always_fail):
                self.failures += 1
                return 503
            streak = self._streak.get(path, 0)
            if streak < self.max_consecutive:
                if self.fail_first.get(path, 0) > 0:
                    self.fail_first[path] -= 1
                    return self._transient(path, streak)
                if self.fail_every and self._count % self.fail_every == 0:
                    return self._transient(path, streak)
            self._streak[path] = 0
            self.requests[path] = self.requests.get(path, 0) + 1
            return 200

    def _transient(self, path: str, streak: int) -> int:
        self._streak[path] = streak + 1
        self.failures += 1
        return 503


class RangeHTTPRequestHandler(BaseHTTPRequestHandler):
    """GET/HEAD of files under ``root`` with single ``Range: bytes=a-b`` support (what GDAL uses)."""

    root: Path
    rules: BlobRules
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def do_HEAD(self) -> None:
        """Headers only."""
        self._serve(body=False)

    def do_GET(self) -> None:
        """Headers and (a range of) the file."""
        self._serve(body=True)

    def _reply(self, status: int, headers: dict[str, str], payload: bytes, body: bool) -> None:
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(k, v)
        self.end_headers()
        if body and payload:
            self.wfile.write(payload)

    def _serve(self, body: bool) -> None:
        parts = urlsplit(self.path)
        rel = unquote(parts.path).lstrip("/")
        status = self.rules.verdict(rel, dict(parse_qsl(parts.query)))
        if status != 200:
            self._reply(status, {"Content-Type": "text/plain"}, b"unavailable\n", body)
            return
        target = (self.root / rel).resolve()
        if self.root not in target.parents or not target.is_file():
            self._reply(404, {"Content-Type": "text/plain"}, b"not found\n", body)
            return
        data = target.read_bytes()
        size = len(data)
        rng = self.headers.get("Range")
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].split(",")[0].partition("-")
            if first:
                a, b = int(first), min(int(last) if last else size - 1, size - 1)
            else:  # suffix range: the last N bytes
                a, b = max(size - int(last), 0), size - 1
            if a >= size:
                self._reply(416, {"Content-Range": f"bytes */{size}"}, b"", body)
                return
            headers["Content-Range"] = f"bytes {a}-{b}/{size}"
            self._reply(206, headers, data[a : b + 1], body)
            return
        self._reply(200, headers, data, body)


@contextmanager
def blob_server(root: Path, rules: BlobRules | None = None) -> Iterator[tuple[str, BlobRules]]:
    """Serve ``root`` over HTTP on 127.0.0.1 from a thread; yields ``(base URL, rules)``."""
    rules = rules or BlobRules()
    handler = type("Handler", (RangeHTTPRequestHandler,), {"root": root.resolve(), "rules": rules})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="blob-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", rules
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Comparing result stores

#: Attributes that legitimately differ between an interrupted-and-resumed run and a clean one.
VOLATILE_ATTRS = frozenset({"landslide:completed_at", "landslide:chips_run"})


def store_bytes(path: Path) -> dict[str, bytes]:
    """Decoded bytes of ``probability``, ``valid`` and ``slope`` of a store (read with zarr)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][...].tobytes() for name in ("probability", "valid", "slope")}


def assert_same_store(path: Path, reference: Path) -> int:
    """Assert two stores hold identical arrays (byte for byte) and attributes; return bytes compared."""
    import zarr

    got, ref = store_bytes(path), store_bytes(reference)
    for name in ref:
        assert got[name] == ref[name], f"{name} differs from the reference"
    a = {k: v for k, v in zarr.open_group(str(path), mode="r").attrs.items() if k not in VOLATILE_ATTRS}
    b = {k: v for k, v in zarr.open_group(str(reference), mode="r").attrs.items() if k not in VOLATILE_ATTRS}
    assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    return sum(len(v) for v in ref.values())


def store_attrs_file(path: Path) -> dict[str, object]:
    """The group attributes as on disk right now (Zarr v2 ``.zattrs``; {} while absent or torn)."""
    try:
        return dict(json.loads((path / ".zattrs").read_text()))
    except (OSError, ValueError):
        return {}
