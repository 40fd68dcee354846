"""Column definitions shared by the terminal and markdown tables, and number formatting."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Tuple

Column = Tuple[str, Callable[[Dict], str], bool]  # header, cell, right-aligned


def num(v: Any, digits: int = 3) -> str:
    """A number with about `digits` significant digits, '-' when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    v = float(v)
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:,.{decimals}f}" if abs(v) >= 1e4 else f"{v:.{decimals}f}"


def times(v: Any) -> str:
    return "-" if v is None else f"{num(v)}x"


def pct(v: Any) -> str:
    return "-" if v is None else f"{v:.0f}%"


def ok(r: Dict) -> str:
    return "ok" if r.get("match", True) else f"DIFF {r.get('rel_err', float('nan')):.1e}"


LAYOUT_SHORT = {"nchw": "nchw", "channels_last": "cl"}
DTYPE_SHORT = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "float64": "f64"}


def _c(header: str, fn: Callable[[Dict], str], right: bool = True) -> Column:
    return header, fn, right


LAYER_COLUMNS: List[Column] = [
    _c("suite", lambda r: r["suite"], False),
    _c("layer", lambda r: f"{r['n']}x{r['layer']}" + (" +b" if r.get("bias") else ""), False),
    _c("layout", lambda r: LAYOUT_SHORT.get(r["layout"], r["layout"]), False),
    _c("dtype", lambda r: DTYPE_SHORT.get(r["dtype"], r["dtype"]), False),
    _c("pass", lambda r: r["pass"], False),
    _c("ours ms", lambda r: num(r["ours_ms"])),
    _c("torch ms", lambda r: num(r["torch_ms"])),
    _c("speedup", lambda r: times(r["speedup"])),
    _c("MB", lambda r: num(r["bytes"] / 1e6)),
    _c("ours GB/s", lambda r: num(r.get("ours_gbps"))),
    _c("%copy", lambda r: pct(r.get("ours_pct_copy"))),
    _c("%copy here", lambda r: pct(r.get("ours_pct_local_copy"))),
    _c("torch GB/s", lambda r: num(r.get("torch_gbps"))),
    _c("%copy ", lambda r: pct(r.get("torch_pct_copy"))),
    _c("ours GFLOP/s", lambda r: num(r.get("ours_gflops"))),
    _c("torch GFLOP/s", lambda r: num(r.get("torch_gflops"))),
    _c("check", ok, False),
]

SEPARABLE_COLUMNS: List[Column] = [
    _c("case", lambda r: f"{r['n']}x{r['case']}", False),
    _c("layout", lambda r: LAYOUT_SHORT.get(r["layout"], r["layout"]), False),
    _c("dtype", lambda r: DTYPE_SHORT.get(r["dtype"], r["dtype"]), False),
    _c("standard ms", lambda r: num(r["standard_ms"])),
    _c("torch dw+pw ms", lambda r: num(r["torch_ms"])),
    _c("ours ms", lambda r: f"{num(r['ours_ms'])} ({r['ours_impl']})"),
    _c("FLOP ratio", lambda r: times(r["theory_ratio"])),
    _c("torch ratio", lambda r: times(r["torch_ratio"])),
    _c("ours ratio", lambda r: times(r["ours_ratio"])),
    _c("ours vs torch", lambda r: times(r["speedup"])),
    _c("check", ok, False),
]

MODEL_COLUMNS: List[Column] = [
    _c("model", lambda r: r["case"], False),
    _c("layout", lambda r: LAYOUT_SHORT.get(r["layout"], r["layout"]), False),
    _c("dtype", lambda r: DTYPE_SHORT.get(r["dtype"], r["dtype"]), False),
    _c("mode", lambda r: r["mode"], False),
    _c("ours ms", lambda r: num(r["ours_ms"])),
    _c("torch ms", lambda r: num(r["torch_ms"])),
    _c("speedup", lambda r: times(r["speedup"])),
    _c("ours img/s", lambda r: num(r["ours_images_per_s"])),
    _c("torch img/s", lambda r: num(r["torch_images_per_s"])),
    _c("dw layers", lambda r: str(r["converted_layers"])),
    _c("max |diff|", lambda r: f"{r['max_abs_diff']:.1e}"),
    _c("check", ok, False),
]

SUMMARY_COLUMNS: List[Column] = [
    _c("dtype", lambda r: r["dtype"], False),
    _c("layout", lambda r: r["layout"], False),
    _c("pass", lambda r: r.get("pass") or r.get("mode") or "fwd", False),
    _c("rows", lambda r: str(r["count"])),
    _c("geomean speedup", lambda r: times(r["geomean_speedup"])),
    _c("all match", lambda r: "yes" if r["all_match"] else "NO", False),
]


def cells(columns: List[Column], rows: List[Dict]) -> List[List[str]]:
    return [[fn(r) for _, fn, _ in columns] for r in rows]


def plain(columns: List[Column], rows: List[Dict]) -> str:
    """A fixed-width text table."""
    body = cells(columns, rows)
    heads = [h for h, _, _ in columns]
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(heads)]

    def line(values):
        return "  ".join(
            v.rjust(w) if columns[i][2] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    return "\n".join([line(heads), "  ".join("-" * w for w in widths)] + [line(r) for r in body])


def markdown(columns: List[Column], rows: List[Dict]) -> str:
    heads = [h.strip() for h, _, _ in columns]
    align = ["---:" if right else "---" for _, _, right in columns]
    out = ["| " + " | ".join(heads) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells(columns, rows)]
    return "\n".join(out)
