"""Drive a headless Chromium over the DevTools protocol: load a page, run JS, take screenshots.

Used by the browser tests and by :mod:`pipeline.products.webmap.screenshot`. A deliberately small
client: one page, requests answered in order, every console message, uncaught exception and log
entry kept in :attr:`Page.console` so callers can assert that a page loaded without errors.
WebGL runs on SwiftShader (``--use-angle=swiftshader --enable-unsafe-swiftshader``), so the map
renders on a machine without a GPU or a display.

Needs the ``websockets`` package (a test dependency) and a Chromium binary: ``$LANDSLIDE_CHROMIUM``
or the first of ``chromium``, ``chromium-browser``, ``google-chrome``, ``headless_shell`` on the
``PATH`` (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "headless_shell")

#: Flags for a reproducible headless render: software WebGL, no GPU, fixed scale, no extras.
FLAGS = (
    "--headless=new",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-gpu-sandbox",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-device-scale-factor=1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer."""


def find_chromium() -> str | None:
    """Return the Chromium executable to use, or None when there is none."""
    env = os.environ.get("LANDSLIDE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class ConsoleEntry:
    """One console message, uncaught exception or browser log entry."""

    source: str  # "console", "exception" or "log"
    level: str  # "error", "warning", "info", ...
    text: str
    url: str = ""

    @property
    def is_error(self) -> bool:
        """True for errors and uncaught exceptions."""
        return self.level == "error" or self.source == "exception"


class Page:
    """One browser tab reached over its DevTools websocket."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=30)
        self._next = 0
        self.console: list[ConsoleEntry] = []
        self._events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def close(self) -> None:
        """Close the websocket."""
        self._ws.close()

    def _record(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method", ""), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            level = {"assert": "error", "warn": "warning"}.get(params["type"], params["type"])
            self.console.append(ConsoleEntry("console", level, text))
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "")
            self.console.append(ConsoleEntry("exception", "error", text, d.get("url", "")))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console.append(ConsoleEntry("log", e.get("level", ""), e.get("text", ""), e.get("url", "")))
        self._events.append(msg)

    def send(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile are recorded."""
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no answer to {method} within {timeout:g} s")
            msg = json.loads(self._ws.recv(timeout=left))
            if msg.get("id") == ident:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self._record(msg)

    def pump(self, seconds: float) -> None:
        """Receive and record events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._record(json.loads(self._ws.recv(timeout=left)))
            except TimeoutError:
                return

    def set_viewport(self, width: int, height: int) -> None:
        """Fix the layout viewport (CSS pixels = screenshot pixels)."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        """Load ``url`` and wait for its load event."""
        self._events.clear()
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading within {timeout:g} s")
            self.pump(0.1)

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """Evaluate JS (awaiting a promise) and return its JSON value; a JS exception raises."""
        r = self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(d.get("exception", {}).get("description") or d.get("text", "JS error"))
        return r.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 90.0, interval: float = 0.2) -> Any:
        """Poll a JS expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout:g} s waiting for {expression}")
            self.pump(interval)

    def screenshot(self, clip: tuple[float, float, float, float] | None = None) -> bytes:
        """Return a PNG of the viewport (or of ``clip`` = x, y, width, height in CSS pixels)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": False}
        if clip is not None:
            x, y, w, h = clip
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])


class Chromium:
    """A headless Chromium process with one page; use as a context manager.

    Args:
        executable: The browser; :func:`find_chromium` if None.
        width: Viewport width, CSS pixels.
        height: Viewport height, CSS pixels.
        extra_flags: More command-line flags.

    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        width: int = 1024,
        height: int = 768,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError("no Chromium found (install Debian's 'chromium' or set LANDSLIDE_CHROMIUM)")
        self.executable = exe
        self.width, self.height = width, height
        self.extra_flags = extra_flags
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self.page: Page | None = None

    def __enter__(self) -> Page:
        self._profile = tempfile.TemporaryDirectory(prefix="landslide-chromium-", ignore_cleanup_errors=True)
        profile = Path(self._profile.name)
        args = [
            self.executable,
            *FLAGS,
            *self.extra_flags,
            f"--user-data-dir={profile}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        try:
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.page = self._open_page(profile)
            self.page.set_viewport(self.width, self.height)
        except BaseException:  # a failed start (or Ctrl-C) leaves no browser and no profile behind
            self._cleanup()
            raise
        return self.page

    def _open_page(self, profile: Path) -> Page:
        """Wait for the DevTools port and connect to the browser's page."""
        assert self._proc is not None
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self._proc.poll() is not None:
                raise BrowserError(f"{self.executable} exited with status {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise BrowserError("Chromium did not open its DevTools port within 60 s")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                targets = json.load(r)
        except OSError as exc:
            raise BrowserError(f"Chromium's DevTools endpoint on port {port} did not answer: {exc}") from exc
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError("Chromium has no page target")
        return Page(pages[0]["webSocketDebuggerUrl"])

    def _cleanup(self) -> None:
        if self.page is not None:
            try:
                self.page.close()
            except Exception:  # the browser may already be gone
                pass
            self.page = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()
