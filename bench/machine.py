"""The machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil
import torch

from pipeline.cluster import cpu_count


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """Vector-ISA flags that matter for fp32/bf16 matmuls (avx2, fma, avx512*, amx*)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f in {"avx2", "fma"} or f.startswith(("avx512", "amx")))
    except OSError:
        pass
    return []


def host_kind() -> str:
    """``gpu-<name>`` when CUDA is visible (e.g. ``gpu-h100``), else ``cpu-<cores>core``."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0).lower()
        for known in ("h200", "h100", "a100", "l40s", "l4", "a10", "t4", "v100"):
            if known in name:
                return f"gpu-{known}"
        return "gpu-" + name.replace("nvidia", "").strip().split()[0]
    return f"cpu-{cpu_count()}core"


def versions() -> dict[str, str]:
    """Versions of the packages whose speed is measured."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("dask", "distributed", "odc-stac", "numpy", "rasterio", "xarray", "zarr"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, ISA flags, GPU (if any) and the load average when asked."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_flags": cpu_flags(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)}
    return info
