"""The CPU output cache: large outputs of dsconv's CPU ops reuse freed blocks.

A big depthwise layer's output (tens of MB) is fresh memory on every call with glibc's
allocator, and faulting it in page by page costs as much as the convolution. dsconv keeps the
blocks its outputs free (up to a limit, 1 GiB by default, ``DSCONV_CPU_CACHE_MB`` to change it,
0 to turn the cache off) and hands them to the next output of a fitting size, as PyTorch's CUDA
caching allocator does on the GPU. Only outputs of 4 MiB or more are cached.
"""
from typing import Dict

import torch


def cpu_cache_info() -> Dict[str, int]:
    """Bytes and blocks the cache holds now, its limit, and how many large outputs it served
    (hits) or had to allocate (misses) so far."""
    cached, blocks, limit, hits, misses = torch.ops.dsconv._cpu_cache_stats()
    return {"cached_bytes": cached, "cached_blocks": blocks, "limit_bytes": limit, "hits": hits, "misses": misses}


def empty_cpu_cache() -> None:
    """Return every cached block to the system (live tensors are not affected)."""
    torch.ops.dsconv._cpu_cache_empty()


def set_cpu_cache_limit(limit_bytes: int) -> int:
    """Cache at most ``limit_bytes`` of freed output blocks (0 turns the cache off); returns the
    previous limit. Trims the cache at once when it holds more."""
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int):
        raise TypeError(f"dsconv: set_cpu_cache_limit takes an int number of bytes, got {type(limit_bytes).__name__}")
    if limit_bytes < 0:
        raise ValueError(f"dsconv: the CPU cache limit must be >= 0 bytes, got {limit_bytes}")
    return torch.ops.dsconv._cpu_cache_set_limit(limit_bytes)
