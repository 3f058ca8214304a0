"""The bench result as tables (Markdown), files, and the blocks of README and docs it feeds.

``python -m bench.report --update-docs`` rewrites the block between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` in README.md and docs/performance.md from the committed
``bench/results/<host-kind>.json`` (tests/test_bench.py checks that they agree).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Files whose bench block is generated, and the result they show.
DOC_FILES = (ROOT / "README.md", ROOT / "docs" / "performance.md")
DOC_RESULT = ROOT / "bench" / "results" / "cpu-2core.json"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _f(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """``(figure, value)`` rows of the measurement table."""
    rows: list[tuple[str, str]] = [("ceiling fp32 matmul GFLOP/s", _f(result["ceiling_gflops"]))]
    if "ceiling_bf16_gflops" in result:
        rows.append(("ceiling bf16 matmul GFLOP/s", _f(result["ceiling_bf16_gflops"])))
    for name, m in result["models"].items():
        value = f"{m['batch']} / {_f(m['chips_per_s'])} / {_f(m['gflop_per_chip'])} / {_f(m['mfu'])}"
        rows.append((f"model {name}: batch / chips/s / GFLOP per chip / mfu", value))
        if m.get("tile", 128) > 128:
            rows.append((f"model {name}: chips/s on {m['tile']}-px tiles", _f(m["tile_chips_per_s"])))
    for name, e in result["end_to_end_models"].items():
        value = f"{_f(e['km2_per_s'])} / {_f(e['chips_per_s'])} / {_f(e['overlap_factor'])}"
        rows.append((f"end-to-end {name}: km2/s / chips/s / overlap factor", value))
        rows.append((f"end-to-end {name}: over model-only (in its worker)", _f(e["end_to_end_over_model"])))
        rows.append((f"end-to-end {name}: peak RSS MB, all processes", _f(e["peak_rss_mb"], 4)))
        if "end_to_end_over_model_main" in e:
            value = f"{_f(e['model_chips_per_s'])} / {_f(e['model_chips_per_s_main'])}"
            figure = f"end-to-end {name}: model-only chips/s in its worker / in a child of the bench process"
            rows.append((figure, value))
    for name, p in result["peers"].items():
        rows.append((f"peer {name}: chips/s / km2/s", f"{_f(p['chips_per_s'])} / {_f(p['km2_per_s'])}"))
        value = f"{_f(result[f'speedup_vs_{name}'])}; {_f(result[f'speedup_vs_{name}_km2'])}"
        rows.append((f"sweep over peer {name} (chips/s; km2/s)", value))
    wo = result.get("worker_overhead")
    if wo:
        c = wo["chips_per_s"]
        rows.append(("U-Net chips/s: plain process / Dask worker (Dask's malloc) / Dask worker (ours)",
                     f"{_f(c['plain'])} / {_f(c['dask_default'])} / {_f(c['landslide'])}"))  # fmt: skip
    mem = result.get("memory")
    if mem:
        for key, s in mem["runs"].items():
            rows.append((f"memory {key} ({_f(s['area_km2'])} km2): peak RSS MB / s per km2",
                         f"{_f(s['peak_rss_mb'], 4)} / {_f(s['s_per_km2'])}"))  # fmt: skip
    dp = result.get("data_path")
    if dp:
        for key, value in dp.items():
            if isinstance(value, int | float):
                rows.append((f"data path: {key}", _f(value)))
    return rows


def target_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """``(figure, value, target, met, cause)`` rows of the targets."""
    out = []
    for t in result.get("targets", []):
        met = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        value = "" if t["value"] is None else _f(t["value"])
        out.append((t["figure"], value, t["target"], met, t["cause"] or ""))
    return out


def foreign_cores(result: dict[str, Any]) -> dict[str, float]:
    """Average cores other processes used during each timed phase (0 on a quiet machine)."""
    out = {"ceiling": result.get("ceiling_foreign_cores", 0.0)}
    out |= {f"model {k}": v.get("foreign_cores", 0.0) for k, v in result["models"].items()}
    out |= {f"end-to-end {k}": v.get("foreign_cores", 0.0) for k, v in result["end_to_end_models"].items()}
    out |= {f"peer {k}": v.get("foreign_cores", 0.0) for k, v in result["peers"].items()}
    memory_runs = result.get("memory", {}).get("runs", {})
    out |= {f"memory {k}": v.get("foreign_cores", 0.0) for k, v in memory_runs.items()}
    return out


def markdown(result: dict[str, Any]) -> str:
    """The whole result as Markdown: targets, table, other load, command, machine, versions."""
    lines = ["| target | value | wanted | | measured cause of a miss |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in target_rows(result)]
    lines += ["", "| figure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in table_rows(result)]
    lines += ["", "Cores kept busy by other processes on the machine during each measurement:", ""]
    lines += ["- " + "; ".join(f"{k}: {_f(v, 2)}" for k, v in foreign_cores(result).items())]
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


def docs_block(result: dict[str, Any]) -> str:
    """The generated block README and docs/performance.md carry (markers included)."""
    return f"{BEGIN}\n{markdown(result)}{END}"


def replace_block(text: str, block: str) -> str:
    """``text`` with its bench block replaced by ``block``.

    Raises:
        ValueError: If ``text`` has no bench block.
    """
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"no {BEGIN} ... {END} block")
    return text[:i] + block + text[j + len(END) :]


def current_block(text: str) -> str:
    """The bench block of ``text`` (markers included), or an empty string."""
    i, j = text.find(BEGIN), text.find(END)
    return text[i : j + len(END)] if 0 <= i < j else ""


def update_docs(result_path: Path = DOC_RESULT, files: tuple[Path, ...] = DOC_FILES) -> None:
    """Rewrite the bench block of each file from ``result_path``."""
    block = docs_block(json.loads(result_path.read_text()))
    for path in files:
        path.write_text(replace_block(path.read_text(), block))


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report [--update-docs] [RESULT.json]``: print or publish a result."""
    p = argparse.ArgumentParser(prog="python -m bench.report")
    p.add_argument("result", nargs="?", type=Path, default=DOC_RESULT)
    p.add_argument("--update-docs", action="store_true", help="rewrite the README/docs bench blocks")
    args = p.parse_args(argv)
    if args.update_docs:
        update_docs(args.result)
    else:
        print(markdown(json.loads(args.result.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
