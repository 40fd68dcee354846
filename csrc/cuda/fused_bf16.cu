// Fused depthwise-separable kernel for __nv_bfloat16 (fused_kernel.cuh); one element type per file so the
// types compile in parallel.
#include "fused_kernel.cuh"

DSCONV_FUSED_INSTANTIATE(__nv_bfloat16)
