"""Runs the host-side emulation of the CUDA kernels' index math (tests/cuda_emulation.py) on the
CPU, so CI without a GPU still checks the tiling arithmetic against F.conv2d."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import cuda_emulation  # noqa: E402


def test_cuda_index_math_emulation():
    cuda_emulation.run_all(verbose=False)


def test_cuda_fused_index_math_emulation():
    import cuda_fused_emulation

    cuda_fused_emulation.run_all(verbose=False)
