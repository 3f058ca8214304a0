"""The bench result as a table (Markdown) and files (``bench/results/<host-kind>.{json,md}``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(figure, value, target)`` rows of the headline table."""
    rows: list[tuple[str, str, str]] = [("ceiling fp32 matmul GFLOP/s", _f(result["ceiling_gflops"]), "")]
    if "ceiling_bf16_gflops" in result:
        rows.append(("ceiling bf16 matmul GFLOP/s", _f(result["ceiling_bf16_gflops"]), ""))
    targets = {"unet": ">= 0.6", "hybrid": ">= 0.7", "clay": ""}
    for name, m in result["models"].items():
        rows.append((f"model {name}: batch / chips/s / GFLOP per chip",
                     f"{m['batch']} / {_f(m['chips_per_s'])} / {_f(m['gflop_per_chip'])}", ""))  # fmt: skip
        rows.append((f"model {name}: mfu", _f(m["mfu"]), targets.get(name, "")))
    for name, e in result["end_to_end_models"].items():
        rows.append((f"end-to-end {name}: km2/s / chips/s",
                     f"{_f(e['km2_per_s'])} / {_f(e['chips_per_s'])}", ""))  # fmt: skip
        rows.append((f"end-to-end {name}: overlap factor", _f(e["overlap_factor"]), "<= 1.3"))
        rows.append((f"end-to-end {name}: end_to_end_over_model", _f(e["end_to_end_over_model"]), ">= 0.9"))
    for name, p in result["peers"].items():
        value = f"{_f(p['chips_per_s'])} / {_f(p['km2_per_s'])} / {_f(p['overlap_factor'])}"
        rows.append((f"peer {name}: chips/s / km2/s / overlap", value, ""))
    for peer in ("loop", "map_blocks"):
        value = f"{_f(result[f'speedup_vs_{peer}'])}; {_f(result[f'speedup_vs_{peer}_km2'])}"
        rows.append((f"speedup_vs_{peer} (chips/s; km2/s)", value, ""))
    for key, s in result["scaling"].items():
        rows.append((f"scaling {key} ({_f(s['area_km2'])} km2): s/km2 / peak RSS MB",
                     f"{_f(s['s_per_km2'])} / {_f(s['peak_rss_mb'], 4)}", ""))  # fmt: skip
    rows.append(("memory_growth_16x", _f(result["memory_growth_16x"]), "<= 1.2"))
    rows.append(("time_per_km2_16x_over_1x", _f(result["time_per_km2_16x_over_1x"]), "<= 1.15"))
    for n, w in result["workers"].items():
        rows.append((f"workers {n}: chips/s", _f(w["chips_per_s"]), ""))
    return rows


def foreign_cores(result: dict[str, Any]) -> dict[str, float]:
    """Average cores other processes used during each timed phase (0 on a quiet machine)."""
    out = {"ceiling": result.get("ceiling_foreign_cores", 0.0)}
    out |= {f"model {k}": v.get("foreign_cores", 0.0) for k, v in result["models"].items()}
    out |= {f"end-to-end {k}": v.get("foreign_cores", 0.0) for k, v in result["end_to_end_models"].items()}
    out |= {f"peer {k}": v.get("foreign_cores", 0.0) for k, v in result["peers"].items()}
    out |= {f"scaling {k}": v.get("foreign_cores", 0.0) for k, v in result["scaling"].items()}
    out |= {f"workers {k}": v.get("foreign_cores", 0.0) for k, v in result["workers"].items()}
    return out


def markdown(result: dict[str, Any]) -> str:
    """The whole result as Markdown: table, command, machine, versions, settings."""
    lines = ["| figure | value | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table_rows(result)]
    lines += ["", "Cores kept busy by other processes on the machine during each measurement:", ""]
    lines += [f"- {k}: {_f(v, 2)}" for k, v in foreign_cores(result).items()]
    m = result["machine"]
    lines += [
        "",
        f"Command: `{result['command']}`  ",
        f"Host kind: {result['host_kind']}; {m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB; "
        f"load average (1 min) {m['loadavg_1m_at_start']} at start, {result['loadavg_1m_at_end']} at end.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".  ",
        f"Settings: {json.dumps(result['settings'])}.  ",
        f"Duration: {result['duration_s']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<host-kind>.json`` and ``<host-kind>.md`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{result['host_kind']}.json"
    md = out_dir / f"{result['host_kind']}.md"
    js.write_text(json.dumps(result, indent=1) + "\n")
    md.write_text(f"# Bench: {result['host_kind']}\n\n" + markdown(result))
    return js, md
