"""Block -> probabilities: batched chips through the model, blended seamlessly.

The model is loaded once per Dask worker by :class:`ModelPlugin` (registered with
``client.register_plugin``) and looked up by the task function, so no weights travel in the
task graph. Outside a distributed worker (the synchronous scheduler, tests) the same loader
caches one model per process.

:func:`predict_block` is the function ``map_overlap`` calls: it receives a halo-extended block
of L4S-scaled bands ``[C, H + 2h, W + 2h]`` and returns the blended probability of its core
``[H, W]`` (NaN where any input band is not finite).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from distributed import WorkerPlugin, get_worker
from numpy.typing import NDArray

from pipeline.cluster import TORCH_THREADS_ENV
from pipeline.cube import kernels
from pipeline.models.checkpoint import CheckpointMeta, calibrated_probabilities, load_checkpoint, sha256_file
from pipeline.models.ref import PLUGIN_PREFIX, ModelRef
from pipeline.tiling import FULLY_CONVOLUTIONAL, UNIT_CHIP, ChipGrid, blend_weights, block_chips

#: Set to ``0`` to skip the CPU graph optimisation of :func:`optimize_for_cpu` (eager PyTorch).
CPU_JIT_ENV = "LANDSLIDE_CPU_JIT"
#: Side (pixels) of the example a fully convolutional model is traced with: small, so the trace
#: costs a fraction of a second, and a multiple of 16 like every tile (so no shape-dependent
#: padding branch is recorded). The frozen graph then serves every tile shape.
TRACE_SIDE = 64

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class LoadedModel:
    """A model in eval mode with what is needed to feed it.

    Attributes:
        model: The network (eval mode, on ``device``).
        meta: Its checkpoint metadata.
        device: Torch device string.
        batch_size: 128-px chips per forward pass (larger tiles go ``batch_size * 128^2 / tile
            pixels`` at a time, at least one).
        optimize: On the CPU, run each input shape through a frozen graph (:func:`optimize_for_cpu`).
        pixels_run: Model input pixels this process has run (for throughput reports).
    """

    model: torch.nn.Module
    meta: CheckpointMeta
    device: str
    batch_size: int
    optimize: bool = False
    pixels_run: int = 0
    _prepared: bool = field(default=False, repr=False)
    _graphs: dict[tuple[int, ...], torch.nn.Module] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def chips_run(self) -> int:
        """Model input run so far, in 128-px chips (a 528-px tile counts 17)."""
        return self.pixels_run // UNIT_CHIP**2

    @property
    def mean(self) -> NDArray[np.float32]:
        """Per-band normalisation mean, shaped ``[C, 1, 1]``."""
        return np.asarray(self.meta.norm_mean, dtype=np.float32)[:, None, None]

    @property
    def std(self) -> NDArray[np.float32]:
        """Per-band normalisation standard deviation, shaped ``[C, 1, 1]``."""
        return np.asarray(self.meta.norm_std, dtype=np.float32)[:, None, None]

    def tiles_per_batch(self, height: int, width: int) -> int:
        """Tiles of ``height x width`` per forward pass: ``batch_size`` 128-px chips' worth, >= 1."""
        return max(1, self.batch_size * UNIT_CHIP**2 // (height * width))

    @property
    def fully_convolutional(self) -> bool:
        """Whether one frozen graph serves every input shape (the U-Net), or one per shape (Clay)."""
        return self.meta.model in FULLY_CONVOLUTIONAL

    def _graph(self, batch: torch.Tensor) -> torch.nn.Module:
        """The module for this input: a frozen graph on the CPU.

        A fully convolutional model is traced once, on a small example (:data:`TRACE_SIDE`),
        and that graph runs every tile shape: its outputs are bit-identical to those of a graph
        traced at each shape, at any thread count (tested), and a new shape costs nothing. Other
        models are traced once per input shape (sweeps pad every batch to one shape).
        """
        if not self.optimize or self.device != "cpu":
            return self.model
        key: tuple[int, ...] = () if self.fully_convolutional else tuple(batch.shape)
        if key not in self._graphs:
            if self.fully_convolutional:
                example = torch.zeros((1, batch.shape[1], TRACE_SIDE, TRACE_SIDE))
                example = example.contiguous(memory_format=torch.channels_last)
                self._graphs[key] = optimize_for_cpu(self.model, example, warm_calls=0)
            else:
                self._graphs[key] = optimize_for_cpu(self.model, batch, share_weights=True)
        return self._graphs[key]

    def prepare(self) -> None:
        """Build the CPU graph a sweep will use now rather than on its first batch.

        Called when a worker loads the model, so that a sweep's compute time is the steady
        state: the U-Net's one small trace, or a Clay-based model's trace at a full batch of
        128-px chips (about a minute for Clay-large on 2 cores), happens with the loading.
        Then what tracing freed is handed back to the OS (:func:`release_free_memory`).
        """
        per = self.tiles_per_batch(UNIT_CHIP, UNIT_CHIP)
        batch = torch.zeros((per, len(self.meta.bands), UNIT_CHIP, UNIT_CHIP))
        with self._lock:
            self._graph(batch.contiguous(memory_format=torch.channels_last))
            self._prepared = True
        gc.collect()  # the traced module's reference cycles hold replaced weights until collected
        release_free_memory()

    @property
    def prepared(self) -> bool:
        """Whether :meth:`prepare` has run."""
        return self._prepared

    def probabilities(
        self, chips: NDArray[np.float32] | Sequence[NDArray[np.float32]]
    ) -> NDArray[np.float32]:
        """Run L4S-scaled tiles ``[N, C, H, W]`` through the model in batches.

        Inputs are z-scored with the checkpoint's statistics; non-finite values become 0 (the
        training mean), as in training. Each batch is normalised into one reused buffer, so
        ``chips`` may be a sequence of ``[C, H, W]`` views into a larger array (nothing is
        stacked first).

        Returns:
            Calibrated probabilities ``[N, H, W]`` float32 (the checkpoint's calibration applied).
        """
        n_all = len(chips)
        if n_all == 0:
            return np.empty((0, *np.shape(chips)[2:]), dtype=np.float32)
        c, height, width = (int(v) for v in chips[0].shape)
        out = np.empty((n_all, height, width), dtype=np.float32)
        cuda = self.device.startswith("cuda")
        per = self.tiles_per_batch(height, width)
        mean, std = self.mean, self.std
        # One input shape for every pass (a short last batch is padded with zeros), so a frozen
        # graph never re-specialises; the buffer is reused from batch to batch.
        buf = np.empty((min(per, n_all), c, height, width), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for i in range(0, n_all, per):
                n = min(per, n_all - i)
                for j in range(n):
                    np.subtract(chips[i + j], mean, out=buf[j], dtype=np.float32)
                np.divide(buf[:n], std, out=buf[:n])
                np.nan_to_num(buf[:n], copy=False, nan=0.0, posinf=0.0, neginf=0.0)
                part = buf
                if n < per:
                    part = np.zeros((per, c, height, width), dtype=np.float32)
                    part[:n] = buf[:n]
                batch = torch.from_numpy(part).to(self.device)
                batch = batch.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    logits = self._graph(batch)(batch)
                out[i : i + n] = calibrated_probabilities(logits[:n].float(), self.meta)[:, 0].cpu().numpy()
            self.pixels_run += n_all * height * width
        return out


def optimize_for_cpu(
    model: torch.nn.Module, example: torch.Tensor, warm_calls: int = 2, share_weights: bool = False
) -> torch.nn.Module:
    """Freeze a CPU model into an inference graph with oneDNN-fused kernels.

    ``torch.jit.trace`` + ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference`` folds
    BatchNorm into the convolutions and pre-packs the weights. Measured on a quiet 2-core machine
    it is **not faster** than eager PyTorch (U-Net batch 2 / 8: eager 8.25 / 8.12 chips/s, frozen
    8.0 / 7.24), but its results are **bit-identical whatever the thread count** (eager differs
    by ~6e-8 between 1 and 2 threads), so a sweep resumed on workers with other thread counts,
    or finished by a replacement worker, writes a store identical value for value. The price is
    a one-off trace per worker (a fraction of a second for the U-Net, traced on a small example
    whose graph serves every tile shape; ~75 s for Clay-large, per input shape). Any failure
    falls back to the eager model (with a warning); ``LANDSLIDE_CPU_JIT=0`` disables it.

    Args:
        model: The network in eval mode, on the CPU, channels-last.
        example: A representative input ``[B, C, S, S]`` (channels-last).
        warm_calls: Calls on ``example`` after freezing (the profiling executor specialises the
            graph on its first calls; their outputs were measured equal to later ones for the
            U-Net, which skips them).
        share_weights: Keep the linear layers' weights as they are, shared with ``model``
            (Clay-based models): ``optimize_for_inference`` would store a transposed copy of
            each, doubling Clay-large's 1.3 GB of weights while it runs and adding 1.2 GB for
            good. Only its convolution passes run then (folding, oneDNN convolutions); measured
            on a 4-block hybrid in one process, interleaved: 0.93x the time of the full pass,
            outputs within 1e-8 of it.

    Returns:
        The optimised module, or ``model`` itself when optimisation is disabled or fails.
    """
    if os.environ.get(CPU_JIT_ENV, "1") == "0":
        return model
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings for shape checks (constant per chip)
            traced = torch.jit.trace(model, example, check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
            if share_weights:
                torch._C._jit_pass_fuse_frozen_conv_add_relu(frozen.graph)
                torch._C._jit_pass_convert_frozen_ops_to_mkldnn(frozen.graph)
            else:
                frozen = torch.jit.optimize_for_inference(frozen)
            # The passes leave the weights they replaced (by folded or pre-packed copies) as
            # unused constants: without them the graph holds one copy, not two.
            torch._C._jit_pass_dce(frozen.graph)
            for _ in range(warm_calls):  # first calls specialise the graph for this shape
                frozen(example)
        return frozen
    except Exception as exc:  # any tracing failure means: run eagerly
        log.warning("CPU graph optimisation failed (%s); running the eager model", exc)
        return model


def load_model(
    checkpoint: str | Path, device: str = "auto", batch_size: int = 8, optimize: bool = True
) -> LoadedModel:
    """Load a checkpoint safely and prepare it for inference.

    Args:
        checkpoint: Safetensors checkpoint path.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: 128-px chips per forward pass.
        optimize: On the CPU, freeze the model with :func:`optimize_for_cpu` (once per input
            shape, on first use).
    """
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, device=dev)
    model = model.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return LoadedModel(model=model, meta=meta, device=dev, batch_size=batch_size, optimize=optimize)


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Loading and freezing a model frees about as much memory as the weights (Clay-large: 1.2 GB)
    in many blocks below glibc's mmap threshold; they stay in the process's resident set until
    trimmed. Workers keep glibc's adaptive thresholds (:mod:`pipeline.cluster`), which is what
    keeps the model's activation buffers reused; one trim after loading costs nothing later.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def torch_threads_for_worker(requested: int | None) -> int | None:
    """Intra-op threads a worker's torch should use: ``requested``, else ``$LANDSLIDE_TORCH_THREADS``."""
    if requested:
        return requested
    env = os.environ.get(TORCH_THREADS_ENV)
    return int(env) if env and env.isdigit() and int(env) > 0 else None


class ModelPlugin(WorkerPlugin):
    """Loads the model once per worker when the worker starts (or joins).

    Args:
        model: What to load, and how.
        torch_threads: Intra-op threads for torch on this worker (None: ``$LANDSLIDE_TORCH_THREADS``
            when the worker's environment sets it, else torch's default).
    """

    def __init__(self, model: ModelRef, torch_threads: int | None = None) -> None:
        self.model = model
        self.torch_threads = torch_threads
        self.name = model.plugin_name
        self.loaded: LoadedModel | None = None

    def setup(self, worker: Any) -> None:
        """Verify and load the checkpoint on this worker (``device="auto"`` resolved here)."""
        threads = torch_threads_for_worker(self.torch_threads)
        if threads:
            torch.set_num_threads(threads)
        found = sha256_file(self.model.checkpoint)
        if found != self.model.sha256:
            raise RuntimeError(f"checkpoint {self.model.checkpoint} on this worker has sha256 {found[:12]}")
        self.loaded = process_model(self.model, prepare=True)
        kernels.warm()  # the cube's compiled loops, loaded now rather than in the first block


_PROCESS_MODELS: dict[ModelRef, LoadedModel] = {}
_PROCESS_LOCK = threading.Lock()


def process_model(model: ModelRef, prepare: bool = False) -> LoadedModel:
    """This process's one copy of a model: loaded on first use, shared by every later user.

    The worker plugin (registered again by each sweep on a long-lived cluster) and tasks that
    need the model outside a plugin get the same object, so a worker never holds two copies.

    Args:
        model: What to load, and how.
        prepare: Build its CPU graph now (:meth:`LoadedModel.prepare`) if not built yet.
    """
    key = replace(model, checkpoint=str(Path(model.checkpoint).resolve()))
    with _PROCESS_LOCK:
        loaded = _PROCESS_MODELS.get(key)
        if loaded is None:
            loaded = load_model(model.checkpoint, model.device, model.batch_size)
            _PROCESS_MODELS[key] = loaded
        if prepare and not loaded.prepared:
            loaded.prepare()
        return loaded


def model_for(model: ModelRef) -> LoadedModel:
    """The model of this worker's plugin, or this process's copy (:func:`process_model`)."""
    try:
        worker = get_worker()
    except ValueError:
        worker = None
    if worker is not None:
        plugin = worker.plugins.get(model.plugin_name)
        if isinstance(plugin, ModelPlugin) and plugin.loaded is not None:
            return plugin.loaded
    return process_model(model)


def chips_run_here(dask_worker: Any = None) -> int:
    """Chips run by every model loaded in this process (worker plugins included, each model once).

    Args:
        dask_worker: Supplied by ``Client.run`` (where ``get_worker()`` is not available).
    """
    models = {id(m): m for m in _PROCESS_MODELS.values()}
    worker = dask_worker
    if worker is None:
        try:
            worker = get_worker()
        except ValueError:
            worker = None
    if worker is not None:
        for name, plugin in worker.plugins.items():
            if name.startswith(PLUGIN_PREFIX) and plugin.loaded is not None:
                models[id(plugin.loaded)] = plugin.loaded
    return sum(m.chips_run for m in models.values())


def predict_block(
    block: NDArray[np.float32],
    *,
    grid: ChipGrid,
    bounds_y: list[tuple[int, int]],
    bounds_x: list[tuple[int, int]],
    offset: tuple[int, int],
    shape: tuple[int, int],
    model: ModelRef,
    block_id: tuple[int, ...] | None = None,
) -> NDArray[np.float32]:
    """Blended probabilities of one block's core (the ``map_overlap`` task).

    Args:
        block: Halo-extended L4S-scaled bands ``[C, H + 2 * halo, W + 2 * halo]``.
        grid: The global chip grid.
        bounds_y: ``(start, stop)`` of every chunk along y of the array being mapped.
        bounds_x: Same along x.
        offset: ``(row, col)`` of the mapped array's first pixel in the area's coordinates.
        shape: ``(rows, cols)`` of the whole area (defines the global chip grid's extent).
        model: The model (loaded once per worker by :class:`ModelPlugin`).
        block_id: Supplied by Dask: the output block's ``(y_chunk, x_chunk)``.

    Returns:
        ``[H, W]`` float32 probabilities, NaN where any band is not finite.
    """
    if block_id is None or block.size == 0:  # Dask probing the output type
        return np.empty((0, 0), dtype=np.float32)
    h = grid.halo
    y0, y1 = bounds_y[block_id[-2]]
    x0, x1 = bounds_x[block_id[-1]]
    core_h, core_w = y1 - y0, x1 - x0
    core_y = (y0 + offset[0], y1 + offset[0])
    core_x = (x0 + offset[1], x1 + offset[1])
    finite: NDArray[np.bool_] = np.asarray(np.isfinite(block).all(axis=0))
    valid_core = finite[h : h + core_h, h : h + core_w]
    out = np.full((core_h, core_w), np.nan, dtype=np.float32)
    if not valid_core.any():
        return out
    chips = block_chips(grid, core_y, core_x, shape)
    tiles = [
        (sy, sx, hy, hx)
        for sy, hy in zip(chips.starts_y, chips.sizes_y, strict=True)
        for sx, hx in zip(chips.starts_x, chips.sizes_x, strict=True)
        if _touches_valid(finite, sy + grid.margin, sx + grid.margin, grid.core, h, core_h, core_w)
    ]
    if not tiles:
        return out
    # The area's last block may hand its last cropped tile an input past its halo: pad with NaN.
    need_y = max(sy + hy for sy, _, hy, _ in tiles) - block.shape[1]
    need_x = max(sx + hx for _, sx, _, hx in tiles) - block.shape[2]
    if need_y > 0 or need_x > 0:
        pad = ((0, 0), (0, max(need_y, 0)), (0, max(need_x, 0)))
        block = np.pad(block, pad, constant_values=np.nan)
    loaded = model_for(model)
    weights = blend_weights(grid.chip, grid.overlap, grid.margin)
    acc = np.zeros((core_h, core_w), dtype=np.float64)
    wsum = np.zeros((core_h, core_w), dtype=np.float64)
    if block.dtype != np.float32:
        block = block.astype(np.float32)
    for (hy, hx), group in _by_size(tiles).items():
        probs = loaded.probabilities([block[:, sy : sy + hy, sx : sx + hx] for sy, sx in group])
        for (sy, sx), p in zip(group, probs, strict=True):
            # Intersection of the tile [sy, sy+hy) with the core [h, h+core) in extended coordinates.
            ay, by = max(sy, h), min(sy + hy, h + core_h)
            ax, bx = max(sx, h), min(sx + hx, h + core_w)
            if by <= ay or bx <= ax:
                continue
            w = weights[ay - sy : by - sy, ax - sx : bx - sx]
            acc[ay - h : by - h, ax - h : bx - h] += w * p[ay - sy : by - sy, ax - sx : bx - sx]
            wsum[ay - h : by - h, ax - h : bx - h] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        blended = (acc / wsum).astype(np.float32)
    return np.where(valid_core & (wsum > 0), blended, np.float32(np.nan))


def _by_size(tiles: list[tuple[int, int, int, int]]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Tile starts grouped by tile size (one batch shape per group)."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for sy, sx, hy, hx in tiles:
        groups.setdefault((hy, hx), []).append((sy, sx))
    return groups


def _touches_valid(
    finite: NDArray[np.bool_], sy: int, sx: int, s: int, h: int, core_h: int, core_w: int
) -> bool:
    """Whether a tile's weighted part (``s`` pixels from ``sy, sx``) covers a valid pixel of the core."""
    ay, by = max(sy, h), min(sy + s, h + core_h)
    ax, bx = max(sx, h), min(sx + s, h + core_w)
    return bool(by > ay and bx > ax and finite[ay:by, ax:bx].any())
