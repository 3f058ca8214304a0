"""The targets of the throughput work, each stated as met or missed with the measured cause."""

from __future__ import annotations

from typing import Any

#: Target id -> (figure, comparison, threshold).
TARGETS: dict[str, tuple[str, str, float]] = {
    "data_path_native_1acq": ("data path chips/s per core, PC-shaped scene, one acquisition", ">=", 250.0),
    "data_path_native_4acq": ("data path chips/s per core, PC-shaped scene, four acquisitions", ">=", 80.0),
    "native_over_ten": ("data path PC-shaped over all-10 m scene, same run, one acquisition", ">=", 0.8),
    "native_over_ten_4acq": (
        "data path PC-shaped over all-10 m scene, same run, four acquisitions",
        ">=",
        0.8,
    ),
    "decode_share_native": (
        "decode share of the data path's time, PC-shaped scene, one acquisition",
        ">=",
        0.5,
    ),
    "decode_share_native_4acq": (
        "decode share of the data path's time, PC-shaped scene, four acquisitions",
        ">=",
        0.5,
    ),
    "data_path_1acq": ("data path chips/s per core, one acquisition", ">=", 300.0),
    "data_path_4acq": ("data path chips/s per core, four acquisitions", ">=", 100.0),
    "decode_share": ("decode share of the data path's time, one acquisition", ">=", 0.5),
    "decode_share_4acq": ("decode share of the data path's time, four acquisitions", ">=", 0.5),
    "overlap_unet": ("overlap factor, U-Net end to end", "<=", 1.1),
    "e2e_unet": ("end-to-end over model-only, U-Net", ">=", 0.9),
    "e2e_hybrid": ("end-to-end over model-only, hybrid", ">=", 0.9),
    "vs_loop": ("end-to-end chips/s over a plain one-process loop", ">=", 1.0),
    "memory": ("peak memory x64 over x4 area", "<=", 1.2),
    "peak_rss_unet": ("peak RSS of the U-Net sweep, all its processes (MB)", "<=", 2560.0),
    "peak_rss_hybrid": ("peak RSS of the hybrid sweep, all its processes (MB)", "<=", 4096.0),
    "gpu_hybrid": ("hybrid model-only chips/s on a GPU", ">=", 1000.0),
}


def _met(op: str, value: float, threshold: float) -> bool:
    return value >= threshold if op == ">=" else value <= threshold


def _e2e_cause(result: dict[str, Any], name: str) -> str:
    e = result["end_to_end_models"][name]
    model_s = e["chips"] / e["model_chips_per_s"]
    share = model_s / e["compute_s"]
    parts = [
        f"the model is {share:.0%} of the sweep's compute time at its model-only speed (measured in the "
        f"sweep's worker: {e['model_chips_per_s']:.3g} chips/s)"
    ]
    wo = result.get("worker_overhead")
    if wo:
        parts.append(
            f"in a Dask worker the model alone runs {wo['landslide_over_plain']:.2f} of its speed in a "
            f"plain process (Dask's default malloc: {wo['dask_default_over_plain']:.2f})"
        )
    parts.append(f"other processes kept {e['foreign_cores']:.2f} of the cores busy meanwhile")
    return "; ".join(parts)


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its value (None: not measured), met (True/False/None) and cause of a miss."""
    values: dict[str, float | None] = dict.fromkeys(TARGETS)
    causes: dict[str, str] = {}
    dp = result.get("data_path")
    if dp:
        values["data_path_1acq"] = dp.get("chips_per_s_per_core")
        values["data_path_4acq"] = dp.get("chips_per_s_per_core_4acq")
        values["decode_share"] = dp.get("decode_share")
        values["decode_share_4acq"] = dp.get("decode_share_4acq")
        for key in ("data_path_1acq", "decode_share"):
            causes[key] = str(dp.get("cause", "see the data path's cost split"))
        for key in ("data_path_4acq", "decode_share_4acq"):
            causes[key] = str(dp.get("cause_4acq", dp.get("cause", "see the data path's cost split")))
        native = {
            "data_path_native_1acq": ("chips_per_s_per_core_native", "cause_native"),
            "data_path_native_4acq": ("chips_per_s_per_core_native_4acq", "cause_native_4acq"),
            "native_over_ten": ("native_over_ten", "cause_native"),
            "native_over_ten_4acq": ("native_over_ten_4acq", "cause_native_4acq"),
            "decode_share_native": ("decode_share_native", "cause_native"),
            "decode_share_native_4acq": ("decode_share_native_4acq", "cause_native_4acq"),
        }
        for key, (value, cause) in native.items():
            values[key] = dp.get(value)
            causes[key] = str(dp.get(cause, "not measured: this result has no PC-shaped scene (issue 19)"))
    else:
        for key in ("data_path_1acq", "data_path_4acq", "decode_share", "decode_share_4acq"):
            causes[key] = "not measured: bench.data_path (issue 12 item 1) is not in this tree"
    e2e = result["end_to_end_models"]
    values["overlap_unet"] = e2e["unet"]["overlap_factor"]
    causes["overlap_unet"] = "tiles cut at the area's edge and tiles' context margins"
    for name in ("unet", "hybrid"):
        if name in e2e:
            values[f"e2e_{name}"] = e2e[name]["end_to_end_over_model"]
            causes[f"e2e_{name}"] = _e2e_cause(result, name)
        else:
            causes[f"e2e_{name}"] = f"not measured: {name} left out of this run (--models)"
    if "speedup_vs_loop" in result:
        values["vs_loop"] = result["speedup_vs_loop"]
        causes["vs_loop"] = (
            f"the sweep's end to end is {e2e['unet']['end_to_end_over_model']:.2f} of the model's speed, "
            f"the loop's model runs eagerly one chip at a time; "
            f"km2/s ratio {result['speedup_vs_loop_km2']:.2f}"
        )
    mem = result.get("memory")
    if mem:
        values["memory"] = mem["growth"]
        peaks = ", ".join(f"{k} {v['peak_rss_mb']:.0f} MB" for k, v in mem["runs"].items())
        causes["memory"] = f"peaks {peaks}"
    for name in ("unet", "hybrid"):
        if name in e2e:
            values[f"peak_rss_{name}"] = e2e[name]["peak_rss_mb"]
            each = e2e[name].get("rss_at_peak_mb", {})
            causes[f"peak_rss_{name}"] = "at the peak: " + (
                ", ".join(f"{proc} {mb:.0f} MB" for proc, mb in each.items()) or "no breakdown recorded"
            ) + " (main: the client, the scheduler and the nannies; child: a worker process)"
        else:
            causes[f"peak_rss_{name}"] = f"not measured: {name} left out of this run (--models)"
    models = result.get("models", {})
    if "ceiling_bf16_gflops" in result and "hybrid" in models:
        values["gpu_hybrid"] = models["hybrid"]["chips_per_s"]
        causes["gpu_hybrid"] = "see bench/gpu results"
    else:
        causes["gpu_hybrid"] = "not measured: no GPU on this machine (bench/gpu/run.sh is the GPU run)"
    out = []
    for key, (figure, op, threshold) in TARGETS.items():
        value = values[key]
        met = None if value is None else _met(op, value, threshold)
        out.append({"id": key, "figure": figure, "target": f"{op} {threshold:g}", "value": value, "met": met,
                    "cause": None if met else causes.get(key, "")})  # fmt: skip
    return out
