"""Peak resident memory of a process tree, and the CPU others used meanwhile, sampled in a thread.

The bench machine may be shared: :attr:`PeakTreeRSS.foreign_cores` is the average number of
cores kept busy by processes *outside* this process tree during the measurement (system busy
CPU time minus this tree's CPU time, over the wall time). It is recorded beside every timing so
that a slow figure can be told apart from a busy machine.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


class PeakTreeRSS:
    """Context manager sampling this process and its children (Dask nannies and workers included).

    Attributes:
        interval_s: Sampling period.
        peak_bytes: Largest total resident memory seen.
        at_peak: Resident bytes of each process at that moment (``"main"`` for this process,
            ``"child <pid>"`` for the others: Dask's worker processes).
        wall_s: Duration of the measurement.
        tree_cpu_s: CPU seconds used by the tree (processes that exit count up to their last sample).
        system_busy_s: Busy CPU seconds of the whole machine.
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.at_peak: dict[str, int] = {}
        self.wall_s = 0.0
        self.tree_cpu_s = 0.0
        self.system_busy_s = 0.0
        self._root = psutil.Process()
        self._cpu_at_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._t0 = 0.0
        self._busy0 = 0.0

    def _tick(self) -> None:
        each: dict[str, int] = {}
        for proc in [self._root, *self._root.children(recursive=True)]:
            try:
                with proc.oneshot():
                    name = "main" if proc.pid == self._root.pid else f"child {proc.pid}"
                    each[name] = proc.memory_info().rss
                    cpu = proc.cpu_times()
                    self._cpu_last[proc.pid] = cpu.user + cpu.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        total = sum(each.values())
        if total > self.peak_bytes:
            self.peak_bytes, self.at_peak = total, each

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._tick()
            self._stop.wait(self.interval_s)

    @property
    def peak_mb(self) -> float:
        """Peak resident memory in MiB."""
        return self.peak_bytes / 2**20

    @property
    def at_peak_mb(self) -> dict[str, float]:
        """Resident MiB of each process at the peak, largest first."""
        return {k: v / 2**20 for k, v in sorted(self.at_peak.items(), key=lambda kv: -kv[1])}

    @property
    def foreign_cores(self) -> float:
        """Average cores used by processes outside this tree during the measurement."""
        if self.wall_s <= 0:
            return 0.0
        return max(0.0, (self.system_busy_s - self.tree_cpu_s) / self.wall_s)

    def __enter__(self) -> PeakTreeRSS:
        self._tick()
        self._cpu_at_start = dict(self._cpu_last)
        self._t0, self._busy0 = time.perf_counter(), _busy_seconds()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._tick()
        self.wall_s = time.perf_counter() - self._t0
        self.system_busy_s = _busy_seconds() - self._busy0
        self.tree_cpu_s = sum(v - self._cpu_at_start.get(pid, 0.0) for pid, v in self._cpu_last.items())


#: Copies of the demo scene for the memory figures: x4, x16, x64 (24.6 km2 each copy).
MEMORY_SCALES: dict[str, tuple[int, int]] = {"x4": (2, 2), "x16": (4, 4), "x64": (8, 8)}
#: Blocks and regions of the memory sweeps: small enough that regions fill at every size
#: (512-px blocks, 2 x 2 blocks per region: a region is 1024 x 1024 px), so the figure shows
#: whether memory stays flat once the sweep is region after region.
MEMORY_BLOCK, MEMORY_REGION_BLOCKS = 512, 2


def memory_scaling(
    work: Path, checkpoint: Path, scales: dict[str, tuple[int, int]] | None = None
) -> dict[str, Any]:
    """Peak resident memory of sweeps over growing areas with one (tiny) model.

    Args:
        work: Scratch directory (scenes and stores are written there).
        checkpoint: The model's checkpoint (a tiny U-Net keeps the run short).
        scales: Name -> ``(reps_y, reps_x)`` copies of the demo scene (default
            :data:`MEMORY_SCALES`).

    Returns:
        ``{"runs": {name: figures}, "growth": peak(last) / peak(first), "block": ..., ...}``.
    """
    from bench.scene import build_tiled_scene
    from bench.sweeps import bench_sweep

    scales = scales or MEMORY_SCALES
    runs: dict[str, Any] = {}
    for name, reps in scales.items():
        scene = build_tiled_scene(work / f"mem-scene-{reps[0]}x{reps[1]}", *reps)
        run = bench_sweep(scene, checkpoint, work / f"mem-{name}.zarr", workers=1, block=MEMORY_BLOCK,
                          batch_size=8, region_blocks=MEMORY_REGION_BLOCKS)  # fmt: skip
        runs[name] = {"reps": list(reps), "area_km2": run.area_km2, "peak_rss_mb": run.peak_rss_mb,
                      "s_per_km2": run.s_per_km2, "foreign_cores": run.foreign_cores}  # fmt: skip
    first, last = runs[next(iter(runs))], runs[list(runs)[-1]]
    return {
        "runs": runs,
        "growth": last["peak_rss_mb"] / first["peak_rss_mb"],
        "time_per_km2_ratio": last["s_per_km2"] / first["s_per_km2"],
        "block": MEMORY_BLOCK,
        "region_blocks": MEMORY_REGION_BLOCKS,
    }


def main() -> None:
    """``python -m bench.memory``: the memory figures alone (tiny U-Net, x4 / x16 / x64), as JSON."""
    import json
    import tempfile

    from bench.checkpoints import bench_config, random_checkpoint

    with tempfile.TemporaryDirectory(prefix="landslide-mem-") as tmp:
        ckpt = random_checkpoint("unet", bench_config("unet", True), Path(tmp) / "tiny-unet.safetensors")
        print(json.dumps(memory_scaling(Path(tmp), ckpt), indent=1))


if __name__ == "__main__":
    main()
