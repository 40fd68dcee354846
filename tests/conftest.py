"""pytest configuration shared by the dsconv_ext tests (helpers live in tests/_utils.py)."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import dsconv_ext  # noqa: E402,F401  (registers torch.ops.dsconv)


@pytest.fixture(autouse=True)
def _seed_and_restore_threads():
    """Every test starts from the same RNG state; the thread count is restored afterwards."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _dsconv_cuda_kernels():
    """Tests check dsconv's own CUDA kernels: the public API's 'auto' routing to PyTorch's kernels
    (dsconv_ext/_cuda_route.py) is off except in the tests that set it."""
    prev = dsconv_ext.cuda_kernels()
    dsconv_ext.set_cuda_kernels("dsconv")
    yield
    dsconv_ext.set_cuda_kernels(prev)


def pytest_configure(config):
    # F.conv2d (the reference) warns that it copies the input for 'same' with even kernels.
    config.addinivalue_line("filterwarnings", "ignore:Using padding='same' with even kernel lengths:UserWarning")
