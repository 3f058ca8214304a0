"""``python -m bench.trace_cost``: what the CPU graph costs, traced per tile shape or once.

Paper-width U-Net (seeded random weights), ``--threads`` torch threads. For each tile shape a
sweep meets (a 528-px tile and the cut tiles at an area's edge) it times:

* ``per_shape_first_s``: the old scheme's first call (trace at that shape, freeze, two warm-up
  passes, then the pass itself);
* ``shared_first_s`` / ``shared_next_s``: the first and second pass of one graph traced once
  on a 1 x 13 x 64 x 64 example (the scheme of :meth:`pipeline.predict.LoadedModel._graph`);
* ``bit_identical``: whether the shared graph's output equals that of a graph traced at the shape.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

SHAPES = ((1, 13, 528, 528), (1, 13, 272, 528), (1, 13, 528, 272), (1, 13, 272, 272))


def measure(threads: int) -> dict[str, Any]:
    """The figures above for every shape of :data:`SHAPES`."""
    import torch

    from bench.checkpoints import bench_config, random_checkpoint
    from pipeline.predict import TRACE_SIDE, load_model, optimize_for_cpu

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint("unet", bench_config("unet", False), Path(tmp) / "unet.safetensors")
        model = load_model(ckpt, "cpu", 1).model
    channels_last = torch.channels_last
    t0 = time.perf_counter()
    small = torch.zeros((1, 13, TRACE_SIDE, TRACE_SIDE)).contiguous(memory_format=channels_last)
    shared = optimize_for_cpu(model, small, warm_calls=0)
    out: dict[str, Any] = {"threads": threads, "shared_trace_s": time.perf_counter() - t0, "shapes": {}}
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for shape in SHAPES:
            x = torch.rand(shape, generator=gen).contiguous(memory_format=channels_last)
            t0 = time.perf_counter()
            a = shared(x)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            shared(x)
            nxt = time.perf_counter() - t0
            t0 = time.perf_counter()
            own = optimize_for_cpu(model, x)  # the old scheme: trace at the shape, 2 warm-up passes
            b = own(x)
            per_shape = time.perf_counter() - t0
            out["shapes"]["x".join(map(str, shape[2:]))] = {
                "per_shape_first_s": per_shape, "shared_first_s": first, "shared_next_s": nxt,
                "bit_identical": bool(torch.equal(a, b)),
            }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.trace_cost", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.threads), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
