"""Put glibc's allocator in the state a long-running PyTorch process reaches, before timing
PyTorch's CPU convolutions against ours.

glibc serves allocations at or above its mmap threshold with fresh mmap'd pages, and every first
touch of such a page faults (expensive in a VM). The threshold starts at 128 KiB and rises to the
size of any mmap'd chunk the process frees, up to 32 MiB. So whether PyTorch's output and oneDNN's
reorder buffers (up to tens of MB) fault on every call depends on what the process freed before:
measured on this VM (2026-11-26), the 16x256x28x28 NCHW 3x3 standard conv took 43-45 ms in a fresh
process and 32.6-33.5 ms once a larger block had been freed. Ours is not affected (its CPU outputs
come from dsconv's own cache). A benchmark comparing against PyTorch's standard convolution must
not depend on that history; this raises the threshold to 31 MiB (near its cap) once, as a process that freed
a ~32 MB tensor would (tensors above 32 MiB still fault in every process).
"""
import torch

_done = False


def steady_malloc() -> None:
    """Allocate and free one 31 MiB CPU block (idempotent)."""
    global _done
    if _done:
        return
    t = torch.empty(31 * 2**20 // 4, dtype=torch.float32)
    t.fill_(0)
    del t
    _done = True
