// A small cache of large CPU output blocks, so that ops called again and again with the same
// shapes (every training step, every inference batch) do not page-fault their outputs afresh.
//
// Why: glibc serves blocks over 32 MiB with a fresh mmap and returns them with munmap, so the
// output of a big depthwise layer (38-58 MB at batch 32) is new memory on every call. The kernel
// then pays a page fault and a page zeroing per 4 KiB page on first touch, which on this
// project's machines costs as much as the convolution itself (clone runs at ~11 GB/s against
// copy_'s ~44 GB/s), and with transparent huge pages asked for it swings between cheap and
// compaction stalls (7 vs 48 ms for one layer). PyTorch's CUDA side solves the same problem with
// its caching allocator; its CPU side leaves it to jemalloc/tcmalloc. This pool does it for our
// own outputs only: blocks freed by their tensors are kept (up to a byte limit) and handed to the
// next output of a fitting size.
//
// Control: DSCONV_CPU_CACHE_MB (default 1024; 0 turns the pool off), read at the first use;
// dsconv_ext.set_cpu_cache_limit / empty_cpu_cache / cpu_cache_info at run time.
// Only the bytes of freed blocks count towards the limit; live tensors are the caller's.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

namespace dsconv {

// at::empty(sizes, opts) for an op's output. CPU tensors of at least 4 MiB come from the pool
// (2 MiB-aligned, with the huge-page hint); anything else, or everything when the pool is off,
// from at::empty. The storage is ordinary and resizable (through the pool's allocator).
at::Tensor empty_output(c10::IntArrayRef sizes, const at::TensorOptions& opts);

}  // namespace dsconv
