"""``python -m bench.data_path``: chips/s per core of the data path, with its cost split.

The data path is everything between a catalog and the model's input: catalog search ->
:func:`pipeline.cube.build_cube` (odc-stac reads, harmonisation, SCL mask, median composite,
DEM, slope, L4S scaling) -> :func:`pipeline.cube.stack_bands`; no model. It runs with Dask's
synchronous scheduler, so one core does all the work and ``chips / seconds`` is a per-core rate
(a chip is 128 x 128 output pixels, 1.6384 km2).

Interface (stable; ``bench/run.py`` calls it)::

    from bench.data_path import measure_data_path, DataPathFigure
    fig: DataPathFigure = measure_data_path(work_dir, quick=False)
    fig.as_dict()   # JSON-ready: {"one": {...}, "four": {...}, "targets": {...}, ...}

``measure_data_path`` builds four scenes from the real demo data in ``work_dir``: the demo tiled
``reps`` times with one acquisition, and the same area with four overlapping acquisitions with
clouds in their SCL (:mod:`bench.scene`), every band a 10 m COG on the output grid; and the
headline pair, the same pixels laid out as Planetary Computer serves them
(:func:`pipeline.demo.pc_scene.build_pc_scene`: native 10/20/60 m bands, two overlapping MGRS
tiles and one of the next UTM zone, a swath edge, GLO-30 DEM tiles in EPSG:4326), one and four
acquisitions, about the same area.
For each it times the data path ``repeats`` times (best of; the scenes in turn, round by round,
so all see the same machine state, each timed run after one of the same scene:
:func:`measure_scenes`) and, in as many separate runs with the stages' functions timed (the
fastest one kept, :func:`stage_split`), splits the time into stages (:data:`STAGES`):
``read_decode`` (GDAL opening, reading and decoding COG tiles, also the tiles our reprojection
reads), ``warp`` (the assets that need one: GDAL's warp, or our reprojection,
:mod:`pipeline.cube.reproject`, less its decoding), ``upsample`` (the native-grid bilinear
upsampling of 20 m and 60 m bands),
``read_other`` (the work around each read: odc-stac's chunk allocation, nodata fill and fuse,
or the direct reader's buffers and fuse), ``mask`` (SCL classes and cloud dilation),
``composite`` (harmonisation and median), ``dem`` (seam fill, resampling), ``slope``,
``stack`` (scaling, validity, assembling the layers) and ``other`` (building the graph, Dask's
scheduling, halo exchange, xarray). Figures:

* ``chips_per_s_per_core``: chips / CPU seconds of the timed run (process CPU time, which a
  loaded machine inflates less than wall time; wall time is recorded too);
* ``split_s`` and ``split_fraction``: seconds and fractions per stage from the stage-timed run;
* ``decode_fraction``: the read/decode stage's fraction (target >= 0.5);
* ``loadavg_1m``: the machine's load while it ran (this is a shared 2-core box).

Targets: on the realistic scene (``native``) >= 250 chips/s per core with one acquisition, >= 80
with four, >= 0.8 x the all-10 m scene of the same run; on the all-10 m scene >= 300 and >= 100;
decode >= 50 %.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import importlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from bench.scene import BenchScene
    from pipeline.demo.pc_scene import PCScene

#: Stages of the cost split, each the time inside the functions named (``module:attribute``; a
#: stage's function called inside another stage's counts for the inner one); time in none of them
#: (search, building the graph, Dask's scheduling, copies) is "other".
STAGES: Final[dict[str, tuple[str, ...]]] = {
    "read_decode": ("odc.loader._rio:_do_read", "pipeline.cube.direct:BandReads._read_into",
                    "pipeline.cube.direct:BandReads._warp_tiles", "pipeline.cube.direct:decode_window"),
    "warp": ("rasterio.warp:reproject", "pipeline.cube.direct:BandReads._reproject"),
    "upsample": ("pipeline.cube.upsample:upsample_bilinear",),
    "read_other": ("odc.loader._builder:_dask_loader_tyx", "pipeline.cube.direct:BandReads.read"),
    "mask": ("pipeline.cube.s2:clear_block",),
    "composite": ("pipeline.cube.s2:composite_block",),
    "dem": ("pipeline.cube.dem:fill_seams", "pipeline.cube.dem:resample_block"),
    "slope": ("pipeline.cube.dem:slope_block",),
    "stack": ("pipeline.cube.fused:cube_block",),
}  # fmt: skip
TARGETS: Final[dict[str, float]] = {
    "one": 300.0, "four": 100.0, "native": 250.0, "native_four": 80.0, "native_over_ten": 0.8,
    "decode_fraction": 0.5,
}  # fmt: skip
#: The realistic scenes' area in 10 m pixels (rows, cols): the all-10 m scenes' (4 x 4 demo scenes).
NATIVE_SIZE: Final[tuple[int, int]] = (1536, 2560)
#: Output chip side (pixels) that the per-chip rate counts.
CHIP: Final[int] = 128


@dataclass(frozen=True)
class DataPathRun:
    """One scene's data path, timed and split into stages.

    Attributes:
        scene: Scene name.
        acquisitions: Acquisitions (solar days) over the area.
        shape: Output grid ``(rows, cols)``.
        chunk: Spatial chunk size of the cube.
        chips: Output pixels / 128**2.
        wall_s: Best wall time of the timed runs.
        cpu_s: Process CPU time of that run.
        system_s: The part of ``cpu_s`` spent in the kernel (page faults of fresh memory, with
            transparent huge pages 2 MB zeroed each; I/O calls).
        chips_per_s_per_core: ``chips / cpu_s``.
        split_s: Seconds per stage in the stage-timed run (plus ``other``).
        loadavg_1m: 1-minute load average after the runs.
        odc_stac_cpu_s: Best process CPU time of the same data path with every read through
            odc-stac (``build_cube(direct_reads=False)``), timed in turn with ``cpu_s``.
    """

    scene: str
    acquisitions: int
    shape: tuple[int, int]
    chunk: int
    chips: float
    wall_s: float
    cpu_s: float
    chips_per_s_per_core: float
    split_s: dict[str, float]
    loadavg_1m: float
    odc_stac_cpu_s: float = 0.0
    system_s: float = 0.0

    @property
    def direct_over_odc_stac(self) -> float:
        """Speed-up of the direct reads over odc-stac's reads, whole data path (chips/s ratio)."""
        return self.odc_stac_cpu_s / self.cpu_s if self.odc_stac_cpu_s else 0.0

    @property
    def split_fraction(self) -> dict[str, float]:
        """Fraction of the stage-timed run's time per stage."""
        total = sum(self.split_s.values()) or 1.0
        return {k: v / total for k, v in self.split_s.items()}

    @property
    def decode_fraction(self) -> float:
        """Fraction of the data path's time spent reading and decoding COGs."""
        return self.split_fraction.get("read_decode", 0.0)


@dataclass(frozen=True)
class DataPathFigure:
    """``data_path_chips_per_s_per_core`` for one and four acquisitions, all-10 m and native, with targets."""

    one: DataPathRun
    four: DataPathRun
    native: DataPathRun | None = None
    native_four: DataPathRun | None = None
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))

    def runs(self) -> list[tuple[str, DataPathRun]]:
        """``(key, run)`` of every measured scene."""
        pairs = [
            ("one", self.one),
            ("four", self.four),
            ("native", self.native),
            ("native_four", self.native_four),
        ]
        return [(k, r) for k, r in pairs if r is not None]

    def native_over_ten(self) -> dict[str, float]:
        """Chips/s of the realistic scene over the all-10 m scene's, same run, per acquisition count."""
        out = {}
        if self.native is not None:
            out["one"] = self.native.chips_per_s_per_core / self.one.chips_per_s_per_core
        if self.native_four is not None:
            out["four"] = self.native_four.chips_per_s_per_core / self.four.chips_per_s_per_core
        return out

    def verdicts(self) -> dict[str, bool]:
        """Target met (True) or missed, per figure."""
        out = {}
        for key, run in self.runs():
            out[key] = run.chips_per_s_per_core >= self.targets[key]
            out[f"decode_fraction_{key}"] = run.decode_fraction >= self.targets["decode_fraction"]
        for key, ratio in self.native_over_ten().items():
            out[f"native_over_ten_{key}"] = ratio >= self.targets["native_over_ten"]
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready result (``bench/run.py`` stores it under ``data_path``)."""
        out: dict[str, Any] = {}
        for key, run in self.runs():
            out[key] = {
                **asdict(run),
                "split_fraction": run.split_fraction,
                "decode_fraction": run.decode_fraction,
                "direct_over_odc_stac": run.direct_over_odc_stac,
            }
        out["native_over_ten"] = self.native_over_ten()
        out["targets"] = self.targets
        out["met"] = self.verdicts()
        return out


def _scene_inputs(
    catalog_path: Path, bbox: tuple[float, float, float, float], window: tuple[dt.date, dt.date] | None = None
) -> Callable[..., Any]:
    """A callable running the whole data path once (search, build, stack, compute)."""
    import dask
    from dask.base import compute

    from pipeline import catalog, cube
    from pipeline.bands import SWEEP_BANDS
    from pipeline.demo import scene as demo
    from pipeline.sweep import DEM_WINDOW, area_geobox

    def run_once(chunk: int, direct_reads: bool = True) -> Any:
        cat = catalog.open_catalog(str(catalog_path))
        s2 = cat.search(cube.S2_COLLECTION, bbox, *(window or (demo.DEMO_START, demo.DEMO_END)))
        dem = cat.search(cube.DEM_COLLECTION, bbox, *DEM_WINDOW)
        gbox = area_geobox(bbox)
        cb = cube.build_cube(s2, dem, gbox, chunk=chunk, direct_reads=direct_reads)
        stack = cube.stack_bands(cb, SWEEP_BANDS)
        blocks = stack.to_delayed().ravel().tolist()  # the blocks, as a sweep consumes them
        with dask.config.set(scheduler="synchronous"):
            compute(*blocks)
        return stack.shape

    return run_once


def _resolve(spec: str) -> tuple[Any, str, Any]:
    """``(owner, name, function)`` of a ``module:attribute`` stage function (a class's method too)."""
    module, _, path = spec.partition(":")
    owner: Any = importlib.import_module(module)
    *outer, name = path.split(".")
    for part in outer:
        owner = getattr(owner, part)
    return owner, name, getattr(owner, name)


@contextlib.contextmanager
def timed_stages() -> Iterator[dict[str, float]]:
    """Time spent in each stage's functions (:data:`STAGES`) while the block runs, in seconds.

    Every stage function is replaced, wherever this process refers to it (its own module, the
    modules that imported it by name, its class), by a wrapper adding its time to its stage,
    less the time of the stage functions it calls (the innermost stage wins: a decode inside a
    warp counts as decode); all are put back afterwards. A data path makes a few thousand calls
    of these functions, where cProfile, which this replaced, charged every Python call (by a
    hand count ~240,000 per PC-shaped run, most of them building the graph and scheduling it) and
    so inflated the Python-heavy stage, "other", against the decoding. Single-threaded runs only
    (the bench runs Dask's synchronous scheduler).
    """
    split = dict.fromkeys(STAGES, 0.0)
    inner: list[float] = []  # per open stage call, the time of the stage calls inside it

    def wrap(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            inner.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                split[stage] += spent - inner.pop()
                if inner:
                    inner[-1] += spent

        return timed

    patched: list[tuple[Any, str, Any]] = []
    try:
        for stage, specs in STAGES.items():
            for spec in specs:
                owner, name, fn = _resolve(spec)
                wrapper = wrap(stage, fn)
                holders = [owner] + [m for m in list(sys.modules.values())
                                     if m is not owner and getattr(m, name, None) is fn]  # fmt: skip
                for holder in holders:
                    patched.append((holder, name, fn))
                    setattr(holder, name, wrapper)
        yield split
    finally:
        for holder, name, fn in reversed(patched):
            setattr(holder, name, fn)


def stage_split(run: Callable[[], Any]) -> dict[str, float]:
    """Run ``run`` once with :func:`timed_stages`; seconds per stage, and the rest as ``other``."""
    with timed_stages() as split:
        t0 = time.perf_counter()
        run()
        total = time.perf_counter() - t0
    out = {k: max(v, 0.0) for k, v in split.items()}
    out["other"] = max(total - sum(out.values()), 0.0)
    return out


@dataclass(frozen=True)
class SceneSpec:
    """One scene to measure.

    Attributes:
        name: Its key in the figure (``one``, ``four``, ``native``, ``native_four``).
        catalog: Its STAC catalog.
        bbox: Area (lon/lat).
        acquisitions: Solar days over the area.
        window: Search dates (default: the demo's).
    """

    name: str
    catalog: Path
    bbox: tuple[float, float, float, float]
    acquisitions: int
    window: tuple[dt.date, dt.date] | None = None


def _system_s() -> float:
    """This process's CPU seconds in the kernel so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def measure_scenes(
    specs: list[SceneSpec], *, chunk: int = 2048, repeats: int = 3, settle: bool = True
) -> dict[str, DataPathRun]:
    """Time (best of ``repeats``) and split the data path of several scenes, interleaved.

    Round ``r`` runs every scene with direct reads twice, timing the second, and once with every
    read through odc-stac before round ``r + 1`` starts, so every scene (and both readers) sees
    the same machine state. On this shared VM one scene's runs after another's heavy one were
    measured 20 % slower for a while (transparent huge pages being compacted: the system time of
    the slow runs was 5x), which a scene measured in its own block of time took as its figure.
    Within a round, a run that needs more memory than the run before it pays the kernel for
    faulting in the difference (by hand with ``getrusage``, session 7's code: the four-date PC
    scene spent several times more kernel time right after the one-date one than after the
    four-date all-10 m scene, and its figure moved with the order of the scenes). A sweep's
    blocks follow blocks of the same scene, so the timed run follows one of its own
    (``settle=False``: it follows the previous scene's runs, as before; for comparison).
    """
    runners = {s.name: _scene_inputs(s.catalog, s.bbox, s.window) for s in specs}
    for run_once in runners.values():
        run_once(chunk)  # warm: imports, GDAL drivers, page cache, compiled kernels
        run_once(chunk, False)
    best = {s.name: (float("inf"), float("inf"), 0.0) for s in specs}
    best_odc = {s.name: float("inf") for s in specs}
    shapes: dict[str, tuple[int, int]] = {}
    for _ in range(repeats):
        for name, run_once in runners.items():
            if settle:
                run_once(chunk)  # the memory state of the scene's own previous block
            w0, c0, s0 = time.perf_counter(), time.process_time(), _system_s()
            shape_out = run_once(chunk)
            wall, cpu, system = time.perf_counter() - w0, time.process_time() - c0, _system_s() - s0
            shapes[name] = (int(shape_out[1]), int(shape_out[2]))
            best[name] = min(best[name], (cpu, wall, system))
            c0 = time.process_time()
            run_once(chunk, False)
            best_odc[name] = min(best_odc[name], time.process_time() - c0)
    out = {}
    for spec in specs:
        # The split of the fastest of ``repeats`` timed-stage runs (each after one of the scene's
        # own): one split on a shared VM moved the decode share by +-10 points from run to run.
        job = functools.partial(runners[spec.name], chunk)
        if settle:
            job()  # after a run of its own, as the timed runs
        splits = [stage_split(job) for _ in range(repeats)]
        split = min(splits, key=lambda d: sum(d.values()))
        shape = shapes[spec.name]
        chips = shape[0] * shape[1] / CHIP**2
        cpu, wall, system = best[spec.name]
        out[spec.name] = DataPathRun(
            scene=spec.name, acquisitions=spec.acquisitions, shape=shape, chunk=chunk, chips=chips,
            wall_s=wall, cpu_s=cpu, chips_per_s_per_core=chips / cpu,
            split_s={k: round(v, 4) for k, v in split.items()}, loadavg_1m=round(os.getloadavg()[0], 2),
            odc_stac_cpu_s=best_odc[spec.name], system_s=round(system, 3),
        )  # fmt: skip
    return out


def _cached(out: Path, build: Callable[[Path], BenchScene]) -> BenchScene:
    """The scene in ``out`` if a previous run finished writing it, else build it."""
    from bench.scene import BenchScene

    done = out / "bench-scene.json"
    if done.is_file():
        d = json.loads(done.read_text())
        return BenchScene(Path(d["catalog"]), tuple(d["bbox"]), tuple(d["shape"]), tuple(d["reps"]),
                          tuple(Path(f) for f in d["files"]))  # fmt: skip
    scene = build(out)
    done.write_text(json.dumps({"catalog": str(scene.catalog), "bbox": scene.bbox, "shape": scene.shape,
                                "reps": scene.reps, "files": [str(f) for f in scene.files]}))  # fmt: skip
    return scene


def _cached_pc(out: Path, acquisitions: int, size: tuple[int, int]) -> PCScene:
    """The Planetary-Computer-shaped scene in ``out`` if a previous run finished writing it."""
    from pipeline.demo.pc_scene import PCScene, build_pc_scene

    done = out / "pc-scene.json"
    if done.is_file():
        d = json.loads(done.read_text())
        return PCScene(
            catalog=Path(d["catalog"]), bbox=tuple(d["bbox"]), epsg=d["epsg"], shape=tuple(d["shape"]),
            acquisitions=d["acquisitions"], start=dt.date.fromisoformat(d["start"]),
            end=dt.date.fromisoformat(d["end"]), s2_ids=tuple(d["s2_ids"]), dem_ids=tuple(d["dem_ids"]),
            files=tuple(Path(f) for f in d["files"]),
        )  # fmt: skip
    scene = build_pc_scene(out, acquisitions=acquisitions, size_px=size)
    d = asdict(scene) | {"catalog": str(scene.catalog), "start": scene.start.isoformat(),
                         "end": scene.end.isoformat(), "files": [str(f) for f in scene.files]}  # fmt: skip
    done.write_text(json.dumps(d))
    return scene


#: The order the scenes run in within a round (a scene's figure moves with what ran before it).
SCENE_ORDER: Final[tuple[str, ...]] = ("one", "four", "native", "native_four")


def measure_data_path(
    work: Path, *, quick: bool = False, repeats: int | None = None, native: bool = True,
    order: tuple[str, ...] = SCENE_ORDER, settle: bool = True,
) -> DataPathFigure:  # fmt: skip
    """Build the scenes in ``work`` and measure them.

    Args:
        work: Scratch directory (scenes are written there, reused when present).
        quick: Small scenes (one demo scene, 1 repeat): a smoke test of the code, not a figure.
        repeats: Timed (and stage-timed) runs per scene; default 5 (1 with ``quick``).
        native: Also the Planetary-Computer-shaped scenes (the headline figures).
        order: The scenes' order within a round (names of :data:`SCENE_ORDER`).
        settle: Each timed run follows an untimed run of the same scene (:func:`measure_scenes`).
    """
    from bench.scene import build_multi_scene, build_tiled_scene

    reps = (1, 1) if quick else (4, 4)
    n = repeats or (1 if quick else 5)
    one = _cached(work / f"dp-one-{reps[0]}x{reps[1]}", lambda d: build_tiled_scene(d, *reps))
    four = _cached(
        work / f"dp-four-{reps[0]}x{reps[1]}", lambda d: build_multi_scene(d, *reps, acquisitions=4)
    )
    specs = [SceneSpec("one", one.catalog, one.bbox, 1), SceneSpec("four", four.catalog, four.bbox, 4)]
    if native:
        size = (256, 384) if quick else NATIVE_SIZE
        for key, acq in (("native", 1), ("native_four", 4)):
            pc = _cached_pc(work / f"dp-{key}-{size[0]}x{size[1]}", acq, size)
            specs.append(SceneSpec(key, pc.catalog, pc.bbox, acq, (pc.start, pc.end)))
    specs.sort(key=lambda spec: order.index(spec.name))
    runs = measure_scenes(specs, repeats=n, settle=settle)
    return DataPathFigure(**runs)


def markdown(fig: DataPathFigure) -> str:
    """The figure as a Markdown table."""
    lines = ["| scene | chips/s per core | target | direct / odc-stac reads | decode | "
             + " | ".join(fig.one.split_s) + " |",
             "|---|---|---|---|---|" + "---|" * len(fig.one.split_s)]  # fmt: skip
    for key, run in fig.runs():
        fr = run.split_fraction
        kind = "native 10/20/60 m, two zones, GLO-30" if key.startswith("native") else "all 10 m"
        lines.append(
            f"| {run.acquisitions} acquisition{'s' if run.acquisitions > 1 else ''}, {kind} "
            f"({run.shape[0]}x{run.shape[1]} px, "
            f"load {run.loadavg_1m}) | {run.chips_per_s_per_core:.0f} | >= {fig.targets[key]:.0f} | "
            f"{run.direct_over_odc_stac:.2f}x | {run.decode_fraction:.0%} | "
            + " | ".join(f"{fr[k]:.0%}" for k in run.split_s)
            + " |"
        )
    ratios = fig.native_over_ten()
    if ratios:
        lines.append("")
        lines.append("Native over all-10 m, same run: " + ", ".join(
            f"{k} acquisition{'s' if k == 'four' else ''} {v:.2f}x (>= {fig.targets['native_over_ten']})"
            for k, v in ratios.items()))  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.data_path``."""
    p = argparse.ArgumentParser(prog="python -m bench.data_path", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the demo scene itself, one repeat (smoke test)")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per scene (best of)")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    p.add_argument("--no-native", action="store_true", help="leave out the Planetary-Computer-shaped scenes")
    p.add_argument("--order", default=",".join(SCENE_ORDER),
                   help="the scenes' order within a round (default: %(default)s)")  # fmt: skip
    p.add_argument("--no-settle", action="store_true",
                   help="time each run right after the previous scene's, not one of its own")  # fmt: skip
    args = p.parse_args(argv)
    order = tuple(args.order.split(","))
    if sorted(order) != sorted(SCENE_ORDER):
        p.error(f"--order names each of {', '.join(SCENE_ORDER)} once")
    measure = functools.partial(measure_data_path, quick=args.quick, repeats=args.repeats, order=order,
                                native=not args.no_native, settle=not args.no_settle)  # fmt: skip
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        fig = measure(args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="landslide-dp-") as tmp:
            fig = measure(Path(tmp))
    print(markdown(fig))
    print(json.dumps(fig.as_dict(), indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(fig.as_dict(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
