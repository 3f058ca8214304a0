"""The paper-width U-Net in fresh child processes under different glibc malloc settings.

``python -m bench.malloc_env``: each setting is a child process started with that environment
(glibc reads the variables once, at start), 2 torch threads, chips/s on 128-px chips (batch 4)
and on one 528-px tile (the U-Net's sweep tile), best of two passes after a warm-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.checkpoints import bench_config, random_checkpoint

#: Settings compared: glibc's adaptive default, Dask's nanny default, mmap off + high trim.
VARIANTS: dict[str, dict[str, str]] = {
    "glibc default (unset)": {},
    "MALLOC_TRIM_THRESHOLD_=65536 (Dask's nanny)": {"MALLOC_TRIM_THRESHOLD_": "65536"},
    "MALLOC_MMAP_MAX_=0, trim 256 MiB": {"MALLOC_TRIM_THRESHOLD_": str(256 << 20), "MALLOC_MMAP_MAX_": "0"},
}
_CHILD = r"""
import sys, time, numpy as np, torch
from pipeline.predict import load_model
torch.set_num_threads(2)
m = load_model(sys.argv[1], "cpu", 2)
res = []
for size, n in ((128, 4), (528, 1)):
    x = np.random.default_rng(0).random((n, 13, size, size), dtype=np.float32)
    m.probabilities(x)
    best = 0.0
    for _ in range(2):
        t = time.perf_counter(); m.probabilities(x)
        best = max(best, n * size * size / 128**2 / (time.perf_counter() - t))
    res.append(f"{best:.2f}")
print(" / ".join(res))
"""


def main() -> None:
    """Print chips/s (128-px chips / 528-px tile) for each malloc setting."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint("unet", bench_config("unet", False), Path(tmp) / "unet.safetensors")
        for name, extra in VARIANTS.items():
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            env.update(extra, OMP_NUM_THREADS="2")
            out = subprocess.run([sys.executable, "-c", _CHILD, str(ckpt)], env=env, capture_output=True,
                                 text=True, check=True)  # fmt: skip
            print(f"{name}: {out.stdout.strip()} chips/s (128-px chips / 528-px tile)")


if __name__ == "__main__":
    main()
