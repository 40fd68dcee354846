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


def pytest_configure(config):
    # F.conv2d (the reference) warns that it copies the input for 'same' with even kernels.
    config.addinivalue_line("filterwarnings", "ignore:Using padding='same' with even kernel lengths:UserWarning")
