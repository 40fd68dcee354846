"""Runs the planned measurements with a progress bar and collects everything into one result dict
(the JSON document): machine, config, copy bandwidth, rows of each kind, summary, errors."""
from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from . import layers, machine, models, separable
from .suites import SUITES, Item, Layer, ModelCase, SeparableCase
from .summary import summarize
from .timing import TimingConfig, copy_bandwidth, copy_buffer_bytes

SCHEMA = 1


@dataclasses.dataclass
class Config:
    suites: List[str]
    device: str = "cpu"
    dtypes: List[str] = dataclasses.field(default_factory=lambda: ["float32"])
    layouts: List[str] = dataclasses.field(default_factory=lambda: ["nchw", "channels_last"])
    threads: Optional[int] = None
    out: Path = Path("bench/results")
    plots: bool = True
    quick: bool = False
    batch: Optional[int] = None  # overrides every item's batch size
    copy_mb: Optional[float] = None  # None: max(256 MiB, 4x the last-level cache)
    copy_ref: str = "clone"  # which copy measurement is the 100% of %copy: 'clone' or 'copy_'
    timing: TimingConfig = dataclasses.field(default_factory=TimingConfig)
    progress: bool = True

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        return d


@dataclasses.dataclass
class Task:
    suite: str
    item: Item
    dtype: str
    layout: str

    @property
    def units(self) -> int:  # progress-bar steps: one per row produced
        return 1 if isinstance(self.item, SeparableCase) else 2

    @property
    def kind(self) -> str:
        return {Layer: "layers", SeparableCase: "separable", ModelCase: "models"}[type(self.item)]


def plan(cfg: Config) -> List[Task]:
    tasks = []
    for name in cfg.suites:
        for item in SUITES[name].items(cfg.quick):
            if cfg.batch is not None:
                item = dataclasses.replace(item, n=cfg.batch)
            for dtype in cfg.dtypes:
                for layout in cfg.layouts:
                    tasks.append(Task(name, item, dtype, layout))
    return tasks


class _Progress:
    """tqdm when installed (and wanted), else one line per task on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="row", dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                pass

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=True)
        elif self.enabled:
            print(f"  {text}", file=sys.stderr, flush=True)

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _measure(task: Task, device: str, timing: TimingConfig):
    dtype = getattr(torch, task.dtype)
    module = {"layers": layers, "separable": separable, "models": models}[task.kind]
    return module.measure(task.item, dtype, task.layout, device, timing)


def run(cfg: Config) -> Dict[str, Any]:
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Config) -> Dict[str, Any]:
    started = time.perf_counter()
    nbytes = copy_buffer_bytes(cfg.device, cfg.copy_mb)
    copy_start = copy_bandwidth(cfg.device, nbytes)
    result: Dict[str, Any] = {
        "schema": SCHEMA,
        "machine": machine.describe(cfg.device),
        "config": cfg.as_dict(),
        "layers": [], "separable": [], "models": [], "errors": [],
    }
    tasks = plan(cfg)
    progress = _Progress(sum(t.units for t in tasks), cfg.progress)
    done: Dict[tuple, List[Dict]] = {}  # a layer shape shared by two suites is measured once
    try:
        for task in tasks:
            progress.describe(f"{task.suite} {task.item.label} {task.layout} {task.dtype}")
            key = (task.item.key, task.dtype, task.layout) if isinstance(task.item, Layer) else None
            if key in done:
                for row in done[key]:
                    result["layers"].append(dict(row, suite=task.suite, count=task.item.count, reused=True, wall_s=0.0))
                progress.step(task.units)
                continue
            rows, produced, t0 = [], 0, time.perf_counter()
            try:
                for row in _measure(task, cfg.device, cfg.timing):
                    row = {"suite": task.suite, **row, "wall_s": time.perf_counter() - t0}
                    t0 = time.perf_counter()
                    rows.append(row)
                    result[task.kind].append(row)
                    produced += 1
                    progress.step()
            except Exception as e:  # record and go on: one unsupported case should not lose the run
                result["errors"].append({
                    "suite": task.suite, "item": task.item.label, "dtype": task.dtype, "layout": task.layout,
                    "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=4),
                })
                progress.step(task.units - produced)
            if key is not None:
                done[key] = rows
    finally:
        progress.close()
    copy_end = copy_bandwidth(cfg.device, nbytes)
    reference = max(copy_start[cfg.copy_ref], copy_end[cfg.copy_ref])
    result["copy_bandwidth"] = {
        "bytes": nbytes, "method": cfg.copy_ref, "start_gbps": copy_start, "end_gbps": copy_end,
        "reference_gbps": reference,
    }
    for row in result["layers"]:
        layers.add_rates(row, reference)
    result["summary"] = summarize(result)
    result["elapsed_s"] = time.perf_counter() - started
    return result
