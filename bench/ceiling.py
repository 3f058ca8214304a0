"""The machine's measured matmul ceiling (FLOP/s), the denominator of model FLOP utilisation."""

from __future__ import annotations

import time

import torch


def matmul_gflops(
    n: int = 4096, repeats: int = 5, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n x n`` by ``n x n`` matmul (``2 n^3`` FLOP).

    Args:
        n: Matrix side.
        repeats: Timed multiplications (after one warm-up); the best is kept.
        dtype: Element type (float32; bfloat16 on a GPU).
        device: Torch device.
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    cuda = device.startswith("cuda")
    best = 0.0
    with torch.inference_mode():
        torch.mm(a, b)
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.mm(a, b)
            if cuda:
                torch.cuda.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best
