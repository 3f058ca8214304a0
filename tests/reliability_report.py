"""Run the reliability tests and write the table of figures the README and docs quote.

    python -m tests.reliability_report [--out docs/reliability-figures.md]

Runs ``tests/test_reliability_kill.py``, ``tests/test_reliability_io.py`` and
``tests/test_reliability_inputs.py`` in this process (pytest.main), then states: the machine and
its load, the cases passed, the kills survived, the damaged regions recomputed, the bytes
compared exactly against uninterrupted runs, the 503s absorbed, the tokens issued, and the wall
time. Every figure printed comes from this run; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pytest

FILES = ("tests/test_reliability_kill.py", "tests/test_reliability_io.py", "tests/test_reliability_inputs.py")


class _Outcomes:
    """A pytest plugin counting the outcome of every test call."""

    def __init__(self) -> None:
        self.by_file: dict[str, dict[str, int]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            counts = self.by_file.setdefault(report.nodeid.split("::")[0], {})
            counts[report.outcome] = counts.get(report.outcome, 0) + 1


def _versions() -> str:
    import distributed
    import rasterio
    import zarr

    return (
        f"Python {platform.python_version()}, zarr {zarr.__version__}, "
        f"distributed {distributed.__version__}, "
        f"GDAL {rasterio.__gdal_version__} (rasterio {rasterio.__version__})"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the tests, print the table (and write it to ``--out``); exit non-zero on a failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    outcomes = _Outcomes()
    t0 = time.perf_counter()
    code = pytest.main(["-q", "-p", "no:cacheprovider", *FILES], plugins=[outcomes])
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    kill = sys.modules["tests.test_reliability_kill"].FIGURES
    io = sys.modules["tests.test_reliability_io"].FIGURES
    passed = sum(c.get("passed", 0) for c in outcomes.by_file.values())
    failed = sum(c.get("failed", 0) for c in outcomes.by_file.values())
    skipped = sum(c.get("skipped", 0) for c in outcomes.by_file.values())
    rows = [
        ("reliability cases passed", f"{passed} ({failed} failed, {skipped} skipped)"),
        *[(f"  {Path(f).name}", str(c.get("passed", 0))) for f, c in sorted(outcomes.by_file.items())],
        ("kills survived (CLI after a region, CLI at a random time, a Dask worker)", f"{int(kill['kills'])}"),
        ("damaged regions found on resume and recomputed", f"{int(kill['damaged_regions'])}"),
        ("bytes compared exactly, kill/lock/damage stores", f"{int(kill['bytes']):,}"),
        ("bytes compared exactly, remote-read stores", f"{int(io['bytes']):,}"),
        ("bytes compared exactly, total", f"{int(kill['bytes'] + io['bytes']):,}"),
        ("HTTP 503s absorbed by retries (flaky-server test)", f"{io['http_503_absorbed']:,}"),
        ("distinct tokens accepted (expiring-token test)", f"{io['tokens']}"),
        ("wall time", f"{wall:,.0f} s"),
    ]
    lines = [
        f"Command: `python -m tests.reliability_report` on {platform.node()}: {os.cpu_count()} cores, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (a shared machine); "
        f"{_versions()}.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
