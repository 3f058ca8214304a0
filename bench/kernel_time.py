"""``python -m bench.kernel_time``: the compiled cube loops' time on the PC-shaped scene, and layouts' cost.

Runs the data path of the Planetary-Computer-shaped bench scene (the one-acquisition scene of
:mod:`bench.data_path`, synchronous, 2048-px blocks) with every compiled loop of
:mod:`pipeline.cube.kernels` wrapped by a timer, and prints each loop's time per run (the best of
``--repeats`` runs, each after an untimed one) beside the run's CPU time.

Then it re-times the calls of one run, captured with their arguments as the loops got them, two
ways per loop: as the cube passes them (C-contiguous, :func:`pipeline.cube.kernels.contiguous`)
and with the layouts the cube passed before session 9 (the lattice's node rows in Fortran order,
the destination a sub-box view of a larger block), checks that both give the same pixels, and
prints the ratio: numba compiles a loop over an array it cannot prove C-contiguous without vector
instructions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np

#: Per loop, the arguments the cube used to pass in another layout: node rows in Fortran order,
#: destinations as a sub-box of a larger block.
OLD_LAYOUTS: Final[dict[str, dict[str, tuple[int, ...]]]] = {
    "reproject_bilinear": {"fortran": (0, 1), "view": (14,)},
    "sample_bilinear": {"fortran": (1, 2), "view": ()},
    "upsample_bilinear": {"fortran": (), "view": (12,)},
}
#: Arguments a loop writes (copied afresh for every timed call).
WRITTEN: Final[dict[str, int]] = {"reproject_bilinear": 14, "sample_bilinear": 6, "upsample_bilinear": 12}


def _loops() -> dict[str, Callable[..., Any]]:
    """The compiled loops of :mod:`pipeline.cube.kernels`, by name."""
    import numba

    from pipeline.cube import kernels

    return {n: f for n, f in vars(kernels).items() if isinstance(f, numba.core.registry.CPUDispatcher)}


@contextmanager
def timed_loops(capture: bool = False) -> Iterator[tuple[dict[str, float], dict[str, list[list[Any]]]]]:
    """Seconds spent in each compiled loop while the block runs (and, with ``capture``, the calls)."""
    from pipeline.cube import kernels

    spent: dict[str, float] = {}
    calls: dict[str, list[list[Any]]] = {}
    originals = _loops()

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            if capture and name in OLD_LAYOUTS:
                copied = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
                calls.setdefault(name, []).append(copied)
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

        return timed

    try:
        for name, fn in originals.items():
            setattr(kernels, name, wrap(name, fn))
        yield spent, calls
    finally:
        for name, fn in originals.items():
            setattr(kernels, name, fn)


def _old_layout(name: str, args: list[Any]) -> list[Any]:
    """``args`` with the layouts the cube passed before (same values)."""
    out = list(args)
    for i in OLD_LAYOUTS[name]["fortran"]:
        out[i] = np.asfortranarray(args[i])
    for i in OLD_LAYOUTS[name]["view"]:
        a = args[i]
        block = np.zeros((a.shape[0] + 2, a.shape[1] + 64), dtype=a.dtype)
        out[i] = block[1 : 1 + a.shape[0], 32 : 32 + a.shape[1]]
        out[i][...] = a
    return out


def time_layouts(name: str, calls: list[list[Any]], repeats: int) -> tuple[float, float]:
    """Seconds (sum over ``calls`` of each call's best of ``repeats``) contiguous and in the old layouts."""
    fn = _loops()[name]
    totals = []
    results = []
    for make in (lambda a: list(a), lambda a: _old_layout(name, a)):
        total, outs = 0.0, []
        for call in calls:
            best = float("inf")
            for _ in range(repeats):
                args = make(call)
                w = WRITTEN[name]
                if args[w] is call[w]:
                    args[w] = call[w].copy()
                t0 = time.perf_counter()
                fn(*args)
                best = min(best, time.perf_counter() - t0)
            total += best
            outs.append(np.array(args[WRITTEN[name]]))
        totals.append(total)
        results.append(outs)
    for a, b in zip(*results, strict=True):
        if not np.array_equal(a, b, equal_nan=True):
            raise AssertionError(f"{name}: the layouts give different pixels")
    return totals[0], totals[1]


def measure(run: Callable[[], Any], repeats: int = 3) -> dict[str, Any]:
    """Per-loop time of the run (best of ``repeats``) and the layouts' cost on one run's calls."""
    run()  # warm: imports, compiled loops, page cache
    best: dict[str, float] = {}
    cpu = float("inf")
    for _ in range(repeats):
        run()  # the memory state of the scene's own previous run
        with timed_loops() as (spent, _):
            c0 = time.process_time()
            run()
            cpu = min(cpu, time.process_time() - c0)
        for name, s in spent.items():
            best[name] = min(best.get(name, float("inf")), s)
    with timed_loops(capture=True) as (_, calls):
        run()
    layouts = {}
    for name, captured in sorted(calls.items()):
        now, before = time_layouts(name, captured, repeats)
        layouts[name] = {"calls": len(captured), "contiguous_s": now, "old_layout_s": before,
                         "old_over_contiguous": before / now}  # fmt: skip
    return {"cpu_s": cpu, "loops_s": dict(sorted(best.items())), "layouts": layouts}


def markdown(result: dict[str, Any]) -> str:
    """The result as two small tables."""
    lines = [f"CPU time of the run (best): {result['cpu_s'] * 1e3:.0f} ms", "",
             "| compiled loop | ms per run (best) | share of the run's CPU time |",
             "|---|---|---|"]  # fmt: skip
    for name, s in result["loops_s"].items():
        lines.append(f"| {name} | {s * 1e3:.1f} | {s / result['cpu_s']:.1%} |")
    lines += ["", "| loop | calls | contiguous ms | old layouts ms | old / contiguous |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, d in result["layouts"].items():
        lines.append(f"| {name} | {d['calls']} | {d['contiguous_s'] * 1e3:.1f} "
                     f"| {d['old_layout_s'] * 1e3:.1f} | {d['old_over_contiguous']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from bench.data_path import NATIVE_SIZE, _cached_pc, _scene_inputs

    p = argparse.ArgumentParser(prog="python -m bench.kernel_time", description=__doc__.split("\n")[0])
    p.add_argument("--work-dir", type=Path, required=True, help="where the scene is (or is built)")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure (best of)")
    p.add_argument("--size", type=int, nargs=2, default=NATIVE_SIZE, help="scene rows and columns (10 m px)")
    p.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = p.parse_args(argv)
    size = (args.size[0], args.size[1])
    pc = _cached_pc(args.work_dir / f"dp-native-{size[0]}x{size[1]}", 1, size)
    run_once = _scene_inputs(pc.catalog, pc.bbox, (pc.start, pc.end))
    result = measure(lambda: run_once(2048), args.repeats)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
