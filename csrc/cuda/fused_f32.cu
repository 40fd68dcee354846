// Fused depthwise-separable kernel for float (fused_kernel.cuh); one element type per file so the
// types compile in parallel.
#include "fused_kernel.cuh"

DSCONV_FUSED_INSTANTIATE(float)
