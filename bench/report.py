"""Writing a run out: the terminal tables (rich when installed, else plain text), the JSON
document and the markdown summary."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import tables, traffic
from .machine import one_line
from .suites import SUITES

SECTIONS = [
    ("layers", "Depthwise layers", tables.LAYER_COLUMNS),
    ("separable", "Separable vs standard 3x3 conv (forward)", tables.SEPARABLE_COLUMNS),
    ("models", "Whole models", tables.MODEL_COLUMNS),
]


def _summary_rows(result: Dict[str, Any]) -> List[Dict]:
    s = result["summary"]
    return (
        s["layers"]
        + [dict(r, **{"pass": "separable fwd"}) for r in s["separable"]]
        + [dict(r, **{"pass": f"model {r['mode']}"}) for r in s["models"]]
    )


def _copy_line(result: Dict[str, Any]) -> str:
    c = result["copy_bandwidth"]
    m, other = c["method"], ("copy_" if c["method"] == "clone" else "clone")
    what = {"clone": "clone", "copy_": "copy_ into a preallocated tensor"}
    return (
        f"copy bandwidth ({what[m]} of {c['bytes'] / 2**20:.0f} MiB, 2*bytes/time, best of start and end): "
        f"{c['reference_gbps']:.1f} GB/s (start {c['start_gbps'][m]:.1f}, end {c['end_gbps'][m]:.1f}; "
        f"{what[other]}: {c['start_gbps'][other]:.1f})"
    )


def _timing_line(t: Dict[str, Any]) -> str:
    lo, hi = min(t["min_rounds"], t["max_rounds"]), t["max_rounds"]
    rounds = f"{hi}" if lo == hi else f"{lo} to {hi}"
    once = t.get("first_call_sample_s")
    return (
        f"Timing per comparison: warm-up, then {rounds} alternating rounds (as many as fit in {t['budget_s']} s), "
        f"each at least {t['min_round_s'] * 1e3:.0f} ms of back-to-back calls"
        + (f"; single ops taking {once} s or more are measured once." if once else ".")
    )


def _suite_times(result: Dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.0f} s" for k, v in result["summary"]["wall_s_by_suite"].items())


def print_terminal(result: Dict[str, Any]) -> None:
    console = None
    if sys.stdout.isatty():  # rich only on a terminal; plain text in logs and pipes
        try:
            from rich import box
            from rich.console import Console
            from rich.table import Table

            console = Console()
        except ImportError:
            pass
    print(one_line(result["machine"]))
    print(_copy_line(result))
    sections = [(title, cols, result[key]) for key, title, cols in SECTIONS if result[key]]
    sections.append(("Geomean speedup (PyTorch time / ours)", tables.SUMMARY_COLUMNS, _summary_rows(result)))
    for title, columns, rows in sections:
        if console is not None:
            table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
            for head, _, right in columns:
                table.add_column(head.strip(), justify="right" if right else "left", no_wrap=True)
            for row in tables.cells(columns, rows):
                table.add_row(*row)
            console.print(table, crop=False)
        else:
            print(f"\n{title}\n" + tables.plain(columns, rows))
    for e in result["errors"]:
        print(f"ERROR {e['suite']} {e['item']} {e['layout']} {e['dtype']}: {e['error']}")
    print(f"\ntime per suite: {_suite_times(result)}")
    print(f"{result['summary']['mismatches']} result mismatches, {len(result['errors'])} errors, "
          f"{result['elapsed_s']:.0f} s")


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(result: Dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(_clean(result), indent=1, default=str) + "\n")
    return path


def _machine_md(m: Dict[str, Any]) -> str:
    lines = [
        f"- date: {m['date']}",
        f"- CPU: {m['cpu']} ({m['cpu_count']} logical CPUs, flags {' '.join(m['cpu_flags']) or '-'}, "
        f"LLC {m['llc_bytes'] / 2**20 if m['llc_bytes'] else 0:.0f} MiB)",
        f"- dsconv ISA: {m['isa']}; threads: {m['threads']}",
        f"- torch {m['torch']} (CUDA {m['torch_cuda']}); dsconv_ext {m['dsconv_ext']} @ {m['git_commit'] or 'no git checkout'}",
        f"- fused separable op: {'yes' if m['fused_separable'] else 'no'}",
    ]
    if m.get("gpu"):
        lines.insert(2, f"- GPU: {m['gpu']} ({m.get('gpu_memory_gib')} GiB, sm {m.get('gpu_capability')})")
    return "\n".join(lines)


METHOD = """Times are medians over rounds in which ours and PyTorch's alternate in the same process
(after warm-up; CUDA synchronised). Speedup = PyTorch time / our time. PyTorch = `F.conv2d(...,
groups=C)`; `fwd` runs under no_grad, `fwd+bwd` is the forward plus `autograd.grad` of input,
weight (and bias). GB/s = bytes moved / time (1 GB = 1e9 B); %copy = that over the copy bandwidth
of the same run; GFLOP/s = FLOPs / time. Results are checked against PyTorch on the warm-up
outputs (check column: relative max error within the dtype's tolerance).

Each call reuses the same input tensors, so a layer whose tensors fit in the last-level cache is
timed warm: its GB/s can exceed the copy bandwidth (%copy > 100%), which is measured on a
buffer of at least 4x that cache. Compare such rows by speedup, not by %copy.
"""


def write_markdown(result: Dict[str, Any], path: Path, plots: Optional[List[Path]] = None) -> Path:
    m, cfg = result["machine"], result["config"]
    out = [
        f"# dsconv_ext benchmark: {m['gpu'] or m['cpu']} ({m['device']})",
        "",
        _machine_md(m),
        "",
        f"Run: suites {', '.join(cfg['suites'])}; dtypes {', '.join(cfg['dtypes'])}; layouts "
        f"{', '.join(cfg['layouts'])}; {'quick' if cfg['quick'] else 'full'}; "
        f"{result['elapsed_s']:.0f} s ({_suite_times(result)}).",
        "",
        f"{_copy_line(result)}. {_timing_line(cfg['timing'])}",
        "",
        "## Geomean speedup (PyTorch time / ours)",
        "",
        tables.markdown(tables.SUMMARY_COLUMNS, _summary_rows(result)),
    ]
    by_suite = result["summary"]["layers_by_suite"]
    if by_suite:
        cols = [("suite", lambda r: r["suite"], False)] + tables.SUMMARY_COLUMNS
        out += ["", "Per suite:", "", tables.markdown(cols, by_suite)]
    for p in plots or []:
        out += ["", f"![{p.stem}]({p.name})"]
    for suite in dict.fromkeys(r["suite"] for r in result["layers"]):
        rows = [r for r in result["layers"] if r["suite"] == suite]
        out += ["", f"## {suite}: {SUITES[suite].description}", "", tables.markdown(tables.LAYER_COLUMNS[1:], rows)]
    if result["separable"]:
        out += ["", "## separable: 3x3 standard conv C -> C vs depthwise + pointwise (forward)", "",
                "FLOP ratio = 1 / (1/C + 1/k^2); torch ratio = standard / (PyTorch dw + pw); "
                "ours ratio = standard / (ours).", "",
                tables.markdown(tables.SEPARABLE_COLUMNS, result["separable"])]
    if result["models"]:
        out += ["", "## models: converted with dsconv_ext.convert vs stock", "",
                "inference: eval, no_grad; inference-fused: the same after dsconv_ext.fuse (BN folded, DW+PW fused); train-step: forward, cross entropy, backward, SGD step. "
                "max |diff|: eval outputs (inference) or first-step loss (train-step).", "",
                tables.markdown(tables.MODEL_COLUMNS, result["models"])]
    if result["errors"]:
        out += ["", "## Errors", ""] + [
            f"- {e['suite']} {e['item']} {e['layout']} {e['dtype']}: `{e['error']}`" for e in result["errors"]
        ]
    out += ["", "## Method", "", METHOD, "```", traffic.__doc__.strip(), "```", ""]
    path.write_text("\n".join(out))
    return path
