"""Aggregates: geometric-mean speed-ups (PyTorch time / our time) per dtype, layout and pass, over
the distinct layer shapes measured (a shape two suites share counts once), and per suite."""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List


def geomean(values: Iterable[float]) -> float:
    v = [x for x in values if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")


def _groups(rows: List[Dict], keys: List[str]) -> Dict[tuple, List[Dict]]:
    out: Dict[tuple, List[Dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _entries(rows: List[Dict], keys: List[str]) -> List[Dict[str, Any]]:
    return [
        dict(zip(keys, k), count=len(g), geomean_speedup=geomean(r["speedup"] for r in g),
             all_match=all(r.get("match", True) for r in g))
        for k, g in _groups(rows, keys).items()
    ]


def summarize(result: Dict[str, Any]) -> Dict[str, Any]:
    layer_rows = result.get("layers", [])
    unique = [r for r in layer_rows if not r.get("reused")]
    return {
        "layers": _entries(unique, ["dtype", "layout", "pass"]),
        "layers_by_suite": _entries(layer_rows, ["suite", "dtype", "layout", "pass"]),
        "separable": _entries(result.get("separable", []), ["dtype", "layout"]),
        "models": _entries(result.get("models", []), ["dtype", "layout", "mode"]),
        "mismatches": sum(not r.get("match", True) for kind in ("layers", "separable", "models") for r in result.get(kind, [])),
        "errors": len(result.get("errors", [])),
        "wall_s_by_suite": _wall_by_suite(result),
    }


def _wall_by_suite(result: Dict[str, Any]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for kind in ("layers", "separable", "models"):
        for r in result.get(kind, []):
            out[r["suite"]] = out.get(r["suite"], 0.0) + r.get("wall_s", 0.0)
    return out
