"""Agreement of our results with PyTorch's, checked on the warm-up outputs before any timing."""
from __future__ import annotations

from typing import Any, Dict

import torch

# Largest accepted max|ours - torch| / max|torch|, per dtype. Loose enough for a different
# summation order over the largest reductions here (grad-weight over N*OH*OW terms, whole models).
REL_TOL = {torch.float32: 1e-3, torch.float64: 1e-9, torch.bfloat16: 5e-2, torch.float16: 1e-2}


def _flat(value: Any):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flat(v)]
    return []


def agreement(ours: Any, ref: Any, dtype: torch.dtype) -> Dict[str, Any]:
    """{'max_abs_diff', 'rel_err', 'match'} over all tensors in ours/ref (tensors, tuples, lists)."""
    a, b = _flat(ours), _flat(ref)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return {"max_abs_diff": float("inf"), "rel_err": float("inf"), "match": False}
    max_abs, rel = 0.0, 0.0
    for x, y in zip(a, b):
        x, y = x.detach().double(), y.detach().double()
        if not torch.isfinite(x).all() or not torch.isfinite(y).all():
            same = bool(torch.equal(x.nan_to_num(), y.nan_to_num()))
            max_abs, rel = (max_abs, rel) if same else (float("inf"), float("inf"))
            continue
        d = (x - y).abs().max().item() if x.numel() else 0.0
        scale = y.abs().max().item() if y.numel() else 0.0
        max_abs = max(max_abs, d)
        rel = max(rel, d / scale if scale > 0 else d)
    return {"max_abs_diff": max_abs, "rel_err": rel, "match": rel <= REL_TOL.get(dtype, 1e-3)}
