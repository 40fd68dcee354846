"""Interleaved timing of competing callables, and the copy-bandwidth reference.

``compare({"ours": f, "torch": g}, ...)`` times the callables in the same process, alternating
rounds (f, g, f, g, ...) so that frequency drift and noise from other processes hit both alike,
and reports the median per-call time of each. Procedure, per callable:

1. warm-up: one call, and a second one if the first took under ``long_call_s``; the first call's
   output is kept so the caller can check that the results agree. A first call of
   ``first_call_sample_s`` or more (single ops, not whole models) is also taken as the first
   round's sample, so the slowest cases (PyTorch's 31x31 backward: seconds) run only once.
2. calls per round: enough back-to-back calls to last ``min_round_s`` (CUDA: synchronised before
   and after each round, so the time includes the kernels, not just their launch).
3. rounds: as many as fit in ``budget_s``, at least ``min_rounds`` and at most ``max_rounds``
   (``max_rounds`` wins: --repeats 1 gives one round); a single round when a first call took
   ``first_call_sample_s`` or more.

This is what torch.utils.benchmark.Timer.timeit does per measurement, without the hidden warm-up
that Timer adds to every timeit() call (which would triple the cost of the slowest layers).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

import torch


@dataclasses.dataclass
class TimingConfig:
    min_rounds: int = 3  # medians of at least 3 rounds filter out one-off stalls
    max_rounds: int = 7
    budget_s: float = 1.5
    min_round_s: float = 0.01
    long_call_s: float = 1.0
    # A first call at least this long is also the first sample (None: never). For single ops only:
    # their one-off costs are negligible next to seconds; a whole model's first call is not.
    first_call_sample_s: Optional[float] = 3.0


@dataclasses.dataclass
class Timing:
    median_s: float
    samples_s: List[float]  # per-call time of each round
    calls_per_round: int
    output: Any = dataclasses.field(default=None, repr=False)  # the first call's result

    @property
    def spread(self) -> float:
        """(max - min) / median over the rounds: 0 for one round."""
        return (max(self.samples_s) - min(self.samples_s)) / self.median_s if self.median_s > 0 else 0.0


def synchronizer(device: torch.device) -> Callable[[], None]:
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _timed(fn: Callable[[], Any], number: int, sync: Callable[[], None]):
    sync()
    t0 = time.perf_counter()
    out = None
    for _ in range(number):
        out = fn()
    sync()
    return (time.perf_counter() - t0) / number, out


def compare(fns: Dict[str, Callable[[], Any]], cfg: TimingConfig, device="cpu") -> Dict[str, Timing]:
    """Median per-call seconds of each callable, measured in alternating rounds."""
    sync = synchronizer(device)
    first: Dict[str, float] = {}
    outputs: Dict[str, Any] = {}
    samples: Dict[str, List[float]] = {n: [] for n in fns}
    for name, fn in fns.items():
        t, outputs[name] = _timed(fn, 1, sync)
        if cfg.first_call_sample_s is not None and t >= cfg.first_call_sample_s:
            samples[name].append(t)
        elif t < cfg.long_call_s:
            t, _ = _timed(fn, 1, sync)
        first[name] = t
    number = {n: max(1, math.ceil(cfg.min_round_s / max(t, 1e-9))) for n, t in first.items()}
    round_s = sum(number[n] * first[n] for n in fns)
    if any(samples.values()):  # calls of seconds each: one round, partly made of first calls
        rounds = 1
    else:
        rounds = max(1, min(cfg.max_rounds, max(cfg.min_rounds, int(cfg.budget_s / max(round_s, 1e-9)))))
    for r in range(rounds):
        for name, fn in fns.items():
            if r == 0 and samples[name]:  # its first call stands in for round 0
                continue
            t, _ = _timed(fn, number[name], sync)
            samples[name].append(t)
    return {
        n: Timing(statistics.median(samples[n]), samples[n], number[n], outputs[n]) for n in fns
    }


def _l3_bytes() -> Optional[int]:
    """Largest CPU cache (the L3 on x86) from sysfs, or None."""
    best = None
    try:
        import glob

        for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
            text = open(path).read().strip()
            mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
            size = int(text.rstrip("KMG")) * mult
            best = max(best or 0, size)
    except (OSError, ValueError):
        return best
    return best


def copy_buffer_bytes(device: torch.device, size_mb: Optional[float] = None, minimum_mb: float = 256) -> int:
    """Size for the bandwidth test: ``size_mb`` MiB when given, else at least ``minimum_mb`` MiB and
    4x the last-level cache (so the copy streams from and to memory)."""
    device = torch.device(device)
    if size_mb is not None:
        return int(size_mb * 2**20)
    cache = None
    if device.type == "cuda":
        cache = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None)
    elif device.type == "cpu":
        cache = _l3_bytes()
    return int(max(minimum_mb * 2**20, 4 * (cache or 0)))


def copy_bandwidth(device, nbytes: int, repeats: int = 5) -> Dict[str, float]:
    """Copy bandwidth in GB/s (1e9 bytes/s) as 2 * bytes / time (a copy reads and writes each byte):
    'clone' (allocates its output, as the ops do: on a CPU that includes first-touch page faults)
    and 'copy_' (into a preallocated tensor). Median of ``repeats`` after one warm-up."""
    device = torch.device(device)
    sync = synchronizer(device)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    result = {}
    for name, fn in (("clone", src.clone), ("copy_", lambda: dst.copy_(src))):
        fn()
        times = [_timed(fn, 1, sync)[0] for _ in range(repeats)]
        result[name] = 2 * src.numel() * 4 / statistics.median(times) / 1e9
    return result
