"""Block inference: seamless blending, block-size independence, NaN handling, the worker plugin."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from pipeline.models.checkpoint import sha256_file
from pipeline.models.ref import ModelRef
from pipeline.predict import load_model, model_for
from pipeline.sweep import REGION_MARGIN, Region, region_probability
from pipeline.tiling import ChipGrid, blend_weights, grid_for_model, planned_chips, planned_pixels


def _stack(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = REGION_MARGIN
    y = np.linspace(0, 6, shape[0] + 2 * m)[:, None]
    x = np.linspace(0, 6, shape[1] + 2 * m)[None, :]
    base = np.sin(y) * np.cos(x)
    bands = np.stack([base * (c + 1) + rng.normal(0, 0.2, base.shape) + 1 for c in range(13)])
    return bands.astype(np.float32)


def _run(
    stack: np.ndarray,
    ckpt: Path,
    shape: tuple[int, int],
    block: int,
    overlap: int = 8,
    grid: ChipGrid | None = None,
) -> np.ndarray:
    kw = ModelRef(str(ckpt), sha256_file(ckpt), "cpu", 4)
    region = Region(0, (0, shape[0]), (0, shape[1]))
    grid = grid or ChipGrid(overlap=overlap)
    prob = region_probability(da.from_array(stack, chunks=(13, 256, 256)), grid, region, shape, block, kw)
    with dask.config.set(scheduler="synchronous"):
        return prob.compute()


def test_mosaic_is_independent_of_block_size(tiny_unet_checkpoint: Path) -> None:
    shape = (512, 640)
    stack = _stack(shape)
    a = _run(stack, tiny_unet_checkpoint, shape, 256)
    b = _run(stack, tiny_unet_checkpoint, shape, 512)
    assert a.shape == shape and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["clay", "hybrid"])
def test_clay_chips_mosaic_is_independent_of_block_size(tmp_path: Path, name: str) -> None:
    """Clay-based models run blended 128-px chips: blocks of 512 and 1024 give one mosaic."""
    from bench.checkpoints import bench_config, random_checkpoint

    ckpt = random_checkpoint(name, bench_config(name, quick=True), tmp_path / f"{name}.safetensors")
    shape = (512, 768)
    stack = _stack(shape, seed=7)
    grid = grid_for_model(name, 512)
    assert grid == grid_for_model(name, 1024) and not grid.cropped
    a = _run(stack, ckpt, shape, 512, grid=grid)
    b = _run(stack, ckpt, shape, 1024, grid=grid)
    assert a.shape == shape and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_mosaic_equals_direct_blend_of_chips(tiny_unet_checkpoint: Path) -> None:
    """The Dask path equals running every chip of the global grid directly and blending."""
    shape = (256, 384)
    grid = ChipGrid(overlap=16)
    stack = _stack(shape, seed=1)
    got = _run(stack, tiny_unet_checkpoint, shape, 128, overlap=16)
    model = load_model(tiny_unet_checkpoint, "cpu", 4)
    w = blend_weights(grid.chip, grid.overlap).astype(np.float64)
    m = REGION_MARGIN
    acc = np.zeros((shape[0] + 2 * m, shape[1] + 2 * m))
    wsum = np.zeros_like(acc)
    for ky in range(grid.n_chips(shape[0])):
        for kx in range(grid.n_chips(shape[1])):
            sy, sx = grid.chip_start(ky) + m, grid.chip_start(kx) + m
            p = model.probabilities(stack[None, :, sy : sy + 128, sx : sx + 128])[0]
            acc[sy : sy + 128, sx : sx + 128] += w * p
            wsum[sy : sy + 128, sx : sx + 128] += w
    want = (acc / np.where(wsum > 0, wsum, 1))[m : m + shape[0], m : m + shape[1]]
    np.testing.assert_allclose(wsum[m : m + shape[0], m : m + shape[1]], 1.0, atol=1e-6)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_invalid_pixels_are_nan_and_all_invalid_chips_are_skipped(tiny_unet_checkpoint: Path) -> None:
    shape = (384, 384)
    stack = _stack(shape, seed=2)
    m = REGION_MARGIN
    stack[:, m : m + 200, m : m + 200] = np.nan  # a cloud
    stack[3, m + 300, m + 300] = np.nan  # one band missing at one pixel
    # The synchronous scheduler runs chips through this process's cached model.
    model = model_for(ModelRef(str(tiny_unet_checkpoint), sha256_file(tiny_unet_checkpoint), "cpu", 4))
    before = model.chips_run
    got = _run(stack, tiny_unet_checkpoint, shape, 128)
    ran = model.chips_run - before
    assert 0 < ran < planned_chips(ChipGrid(), shape, 128)
    assert np.isnan(got[:200, :200]).all()
    assert np.isnan(got[300, 300])
    assert np.isfinite(got[250:, 250:299]).all() and np.isfinite(got[:, 201:]).sum() > 0
    assert ((got[np.isfinite(got)] >= 0) & (got[np.isfinite(got)] <= 1)).all()


def test_threshold_and_bands_come_from_the_checkpoint(tiny_unet_checkpoint: Path) -> None:
    model = load_model(tiny_unet_checkpoint, "cpu", 2)
    assert model.meta.threshold == 0.5
    assert model.meta.bands[-2:] == ("slope", "dem")
    assert model.mean.shape == (13, 1, 1)
    with pytest.raises(ValueError):
        model.probabilities(np.zeros((1, 12, 128, 128), dtype=np.float32))


def test_cpu_model_output_does_not_depend_on_the_thread_count(tiny_unet_checkpoint: Path) -> None:
    """Why CPU models are frozen: a resumed sweep on workers with other thread counts stays identical."""
    import torch

    x = np.random.default_rng(0).random((8, 13, 128, 128), dtype=np.float32)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(load_model(tiny_unet_checkpoint, "cpu", 4).probabilities(x))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_unet_tiles_mosaic_is_independent_of_block_size(tiny_unet_checkpoint: Path) -> None:
    """U-Net tiles (512-px cores, 8 px of context): blocks of 512 and 1024 give the same mosaic."""
    shape = (768, 1024)  # 768 rows: the last row of tiles is cut at the area's edge
    stack = _stack(shape, seed=3)
    grid = grid_for_model("unet", 512)
    assert grid == grid_for_model("unet", 1024) and grid.cropped
    model = model_for(ModelRef(str(tiny_unet_checkpoint), sha256_file(tiny_unet_checkpoint), "cpu", 4))
    before = model.pixels_run
    a = _run(stack, tiny_unet_checkpoint, shape, 512, grid=grid)
    ran = model.pixels_run - before
    b = _run(stack, tiny_unet_checkpoint, shape, 1024, grid=grid)
    assert a.shape == shape and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    # Every tile ran once: the model saw exactly the planned pixels, ~1.1x the area, not 1.28x.
    assert ran == planned_pixels(grid, shape, 512)
    assert ran / (shape[0] * shape[1]) < 1.1


def test_unet_tiles_equal_direct_crops_of_each_tile(tiny_unet_checkpoint: Path) -> None:
    """Each pixel is the model's output on the one tile whose core holds it, with its margin."""
    shape = (512, 640)
    grid = ChipGrid(chip=256 + 2 * 16, overlap=0, margin=16)  # the U-Net's grid, at a smaller core
    stack = _stack(shape, seed=4)
    got = _run(stack, tiny_unet_checkpoint, shape, 256, grid=grid)
    model = load_model(tiny_unet_checkpoint, "cpu", 4)
    m, c = REGION_MARGIN, grid.core
    want = np.zeros(shape, dtype=np.float32)
    for y in range(0, shape[0], c):
        for x in range(0, shape[1], c):
            hy, hx = grid.tile_size(y // c, shape[0]), grid.tile_size(x // c, shape[1])
            sy, sx = m + y - grid.margin, m + x - grid.margin
            tile = stack[None, :, sy : sy + hy, sx : sx + hx]
            if tile.shape[2:] != (hy, hx):  # the area's last tiles reach past the real margin
                tile = np.pad(tile, ((0, 0), (0, 0), (0, hy - tile.shape[2]), (0, hx - tile.shape[3])),
                              constant_values=np.nan)  # fmt: skip
            p = model.probabilities(tile)[0]
            core = p[grid.margin : grid.margin + c, grid.margin : grid.margin + c]
            want[y : y + c, x : x + c] = core[: shape[0] - y, : shape[1] - x]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_tiles_in_batches_equal_tiles_one_by_one(tiny_unet_checkpoint: Path) -> None:
    """Big tiles go fewer per batch; batching, padding and frozen graphs do not change values."""
    x = np.random.default_rng(5).random((3, 13, 272, 272), dtype=np.float32)
    model = load_model(tiny_unet_checkpoint, "cpu", 8)
    assert model.tiles_per_batch(272, 272) == 1 and model.tiles_per_batch(128, 128) == 8
    together = model.probabilities(x)
    one_by_one = np.concatenate([model.probabilities(x[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, one_by_one)
    assert model.chips_run == 2 * 3 * 272 * 272 // 128**2


def test_unet_one_small_trace_serves_every_tile_shape_bit_for_bit(tiny_unet_checkpoint: Path) -> None:
    """The U-Net is traced once on a small example; each tile shape gets the values a graph
    traced at that very shape gives (and the eager model's within float error), at 1 or 2 threads."""
    import torch

    from pipeline.predict import optimize_for_cpu

    model = load_model(tiny_unet_checkpoint, "cpu", 4)
    rng = np.random.default_rng(6)
    # a real frozen graph, not the eager model that a failed trace falls back to (which would
    # make every comparison below trivially true)
    probe = torch.zeros((1, 13, 144, 144)).contiguous(memory_format=torch.channels_last)
    graph = model._graph(probe)
    assert graph is not model.model and isinstance(graph, torch.jit.ScriptModule), type(graph)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for shape in ((1, 13, 272, 272), (1, 13, 144, 400), (2, 13, 528, 528)):
                x = torch.from_numpy(rng.random(shape, dtype=np.float32))
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    shared = model._graph(x)(x)
                    own_graph = optimize_for_cpu(model.model, x, warm_calls=0)
                    assert isinstance(own_graph, torch.jit.ScriptModule), (threads, shape)
                    own = own_graph(x)
                    eager = model.model(x)
                assert torch.equal(shared, own), (threads, shape)
                assert float((shared - eager).abs().max()) < 1e-4
    finally:
        torch.set_num_threads(before)
    assert len(model._graphs) == 1  # one graph for every shape and thread count


def _imports_torch(module: str) -> bool:
    """Whether importing ``module`` in a fresh interpreter imports torch."""
    import subprocess
    import sys

    probe = f"import sys, {module}; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1] == "True"


def test_the_pure_sweep_plan_and_the_model_reference_import_no_torch() -> None:
    assert not _imports_torch("pipeline.sweep.plan")
    assert not _imports_torch("pipeline.models.ref")
    assert _imports_torch("pipeline.predict")  # the probe sees torch where it is imported


def test_a_process_holds_one_copy_of_a_model_whoever_asks(tiny_unet_checkpoint: Path) -> None:
    """The worker plugin, tasks outside it and the bench's probe share one model per process."""
    from pipeline.predict import chips_run_here, process_model

    ref = ModelRef(str(tiny_unet_checkpoint), sha256_file(tiny_unet_checkpoint), "cpu", 4)
    other_spelling = str(tiny_unet_checkpoint.parent / "." / tiny_unet_checkpoint.name)
    same_file = ModelRef(other_spelling, ref.sha256, "cpu", 4)
    a = process_model(ref, prepare=True)
    assert a.prepared and process_model(same_file) is a and model_for(ref) is a
    before = chips_run_here()
    a.probabilities(np.zeros((2, 13, 128, 128), dtype=np.float32))
    assert chips_run_here() - before == 2  # counted once, however many names it has
    assert process_model(ModelRef(ref.checkpoint, ref.sha256, "cpu", 2)) is not a  # another batch size


def test_clay_graph_shares_the_weights_of_the_eager_model(tmp_path: Path) -> None:
    """Clay-based models' CPU graph holds no second copy of the transformer's linear weights
    (Clay-large: 1.2 GB); the U-Net keeps the full optimisation (it has no linear layers)."""
    import torch

    from bench.checkpoints import bench_config, random_checkpoint

    ckpt = random_checkpoint("hybrid", bench_config("hybrid", quick=True), tmp_path / "hybrid.safetensors")
    model = load_model(ckpt, "cpu", 2)
    model.prepare()
    (graph,) = model._graphs.values()
    linear = {n: m.weight for n, m in model.model.named_modules() if isinstance(m, torch.nn.Linear)}
    weights = {w.data_ptr() for n, w in linear.items() if ".transformer." in n}
    constants = [
        node.t("value") for node in graph.graph.findAllNodes("prim::Constant")
        if node.output().type().kind() == "TensorType" and node.hasAttribute("value") and node.output().uses()
    ]  # fmt: skip
    # Each transformer weight is used by the graph as it is (a transposed copy would have left
    # the original unused, and dropped).
    used = {t.data_ptr() for t in constants if t.layout == torch.strided}
    assert weights and weights <= used
    x = np.random.default_rng(8).random((2, 13, 128, 128), dtype=np.float32)
    with torch.inference_mode():
        eager = torch.sigmoid(model.model(torch.from_numpy((x - model.mean) / model.std))).numpy()[:, 0]
    np.testing.assert_allclose(model.probabilities(x), eager, atol=1e-5)
