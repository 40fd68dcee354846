"""PNG plots of the layer rows (matplotlib, optional): achieved bandwidth against the copy-bandwidth
limit, and speed-up bars. One panel per (dtype, layout) row and pass column."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from .traffic import PASSES


def _panels(rows: List[Dict]) -> Tuple[List[Tuple[str, str]], List[str]]:
    combos = list(dict.fromkeys((r["dtype"], r["layout"]) for r in rows))
    passes = [p for p in PASSES if any(r["pass"] == p for r in rows)]
    return combos, passes


def _figure(plt, rows, ylabel: str):
    combos, passes = _panels(rows)
    n_layers = max(len([r for r in rows if (r["dtype"], r["layout"], r["pass"]) == (*c, p)]) for c in combos for p in passes)
    fig, axes = plt.subplots(
        len(combos), len(passes), figsize=(max(8, 0.32 * n_layers) * len(passes), 3.6 * len(combos)), squeeze=False
    )
    panels = []
    for i, (dtype, layout) in enumerate(combos):
        for j, pass_ in enumerate(passes):
            ax = axes[i][j]
            ax.set_title(f"{pass_}, {layout}, {dtype}", fontsize=10)
            ax.set_ylabel(ylabel)
            panels.append((ax, [r for r in rows if (r["dtype"], r["layout"], r["pass"]) == (dtype, layout, pass_)]))
    return fig, panels


SHORT = {"mobilenet_v1": "mnv1", "mobilenet_v2": "mnv2", "efficientnet_b0": "effb0", "convnext_t": "cnxt-t",
         "replknet_31b": "rlk-31b"}


def _labels(ax, sel):
    ax.set_xticks(range(len(sel)))
    ax.set_xticklabels(
        [f"{SHORT.get(r['suite'], r['suite'])} {r['n']}x{r['layer']}" for r in sel], rotation=75, ha="right", fontsize=7
    )


def plot(result: Dict[str, Any], out_dir: Path, prefix: str) -> List[Path]:
    """Write <prefix>-bandwidth.png and <prefix>-speedup.png; raise ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    rows = [r for r in result["layers"] if not r.get("reused")]
    if not rows:
        return []
    copy_gbps = result["copy_bandwidth"]["reference_gbps"]
    paths = []

    fig, panels = _figure(plt, rows, "GB/s")
    for ax, sel in panels:
        x = range(len(sel))
        ax.bar([i - 0.2 for i in x], [r["ours_gbps"] for r in sel], 0.4, label="dsconv_ext")
        ax.bar([i + 0.2 for i in x], [r["torch_gbps"] for r in sel], 0.4, label="PyTorch")
        ax.axhline(copy_gbps, color="k", ls="--", lw=1, label=f"copy {copy_gbps:.0f} GB/s")
        _labels(ax, sel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}-bandwidth.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, panels = _figure(plt, rows, "speedup (PyTorch / ours)")
    for ax, sel in panels:
        speedups = [r["speedup"] for r in sel]
        ax.bar(range(len(sel)), speedups, color=["tab:green" if s >= 1 else "tab:red" for s in speedups])
        ax.axhline(1.0, color="k", lw=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        _labels(ax, sel)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}-speedup.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
