"""Description of the machine and software a run measured."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from typing import Any, Dict, Optional

import torch

import dsconv_ext

from .timing import _l3_bytes


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list:
    """The SIMD flags that matter here, as /proc/cpuinfo lists them."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16", "amx_bf16"]
                    return [x for x in wanted if x in have]
    except OSError:
        pass
    return []


def dsconv_isa() -> str:
    """The SIMD level dsconv_ext's CPU kernels dispatch to ('generic' before cpu_isa exists)."""
    fn = getattr(dsconv_ext, "cpu_isa", None)
    if fn is None:
        return "generic"
    try:
        return str(fn())
    except Exception as e:  # a broken probe should not sink the benchmark
        return f"unknown ({e})"


def git_commit() -> Optional[str]:
    """HEAD of the checkout dsconv_ext was imported from ('+dirty' with local changes), or None."""
    here = os.path.dirname(os.path.abspath(dsconv_ext.__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def describe(device: torch.device) -> Dict[str, Any]:
    device = torch.device(device)
    l3 = _l3_bytes()
    info: Dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "llc_bytes": l3,
        "isa": dsconv_isa(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "dsconv_ext": getattr(dsconv_ext, "__version__", "unknown"),
        "git_commit": git_commit(),
        "fused_separable": hasattr(dsconv_ext, "separable_conv2d"),
        # dsconv's CPU output cache (0: off); PyTorch's ops allocate their outputs afresh
        "cpu_cache_limit_bytes": dsconv_ext.cpu_cache_info()["limit_bytes"] if hasattr(dsconv_ext, "cpu_cache_info") else None,
        "device": device.type,
        "gpu": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["gpu_capability"] = f"{props.major}.{props.minor}"
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


def one_line(info: Dict[str, Any]) -> str:
    dev = info["gpu"] if info.get("gpu") else f"{info['cpu']} ({info['cpu_count']} CPUs, isa {info['isa']})"
    commit = info.get("git_commit") or "no git"
    commit = commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")
    return (
        f"{dev}, {info['threads']} threads, torch {info['torch']}, dsconv_ext {info['dsconv_ext']} @ {commit}, "
        f"{info['date']}"
    )
