"""examples/train_digits.py: a MobileNet-style network with dsconv_ext layers trains on scikit-learn's
digits to >= 97% test accuracy, and its training curves follow those of the identical pure PyTorch
network (same initial weights, batches and dropout masks): to float64 rounding in float64, and
closely in float32 (where rounding differences grow chaotically once training is under way)."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("sklearn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_digits.py")


def _load_example():
    spec = importlib.util.spec_from_file_location("train_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load_example()


def _run(example, *args):
    # one thread: the timing of a shared CI machine doesn't matter, and results don't depend on it
    return example.main(["--compare", "--threads", "1", *args], log=lambda *a: None)


@pytest.mark.slow
def test_float32_reaches_97_percent_and_follows_pytorch(example):
    result = _run(example, "--epochs", "12")
    assert result["depthwise_layers"] == 4
    ours, ref = result["curves"]["dsconv"], result["curves"]["pytorch"]
    acc = result["final_accuracy"]
    assert acc["dsconv"] >= 0.97, acc
    assert abs(acc["dsconv"] - acc["pytorch"]) <= 0.02, acc
    # the first steps agree to float32 rounding, before chaotic growth sets in
    for i, (a, b) in enumerate(zip(ours["step_loss"][:20], ref["step_loss"][:20])):
        assert a == pytest.approx(b, rel=1e-4), f"step {i}"
    # the epoch loss curves stay together: every epoch within 4% of the starting loss, and both go
    # down by the same factor
    scale = ref["loss"][0]
    for epoch, (a, b) in enumerate(zip(ours["loss"], ref["loss"])):
        assert abs(a - b) <= 0.04 * scale, f"epoch {epoch + 1}: {a} vs {b}"
    assert ours["loss"][-1] < 0.1 * ours["loss"][0] and ref["loss"][-1] < 0.1 * ref["loss"][0]


@pytest.mark.slow
def test_float64_curves_match_pytorch_exactly(example):
    """In float64 the two runs differ only by summation order: every step's loss and every test
    accuracy agree (2 epochs, 86 optimizer steps)."""
    result = _run(example, "--epochs", "2", "--dtype", "float64")
    ours, ref = result["curves"]["dsconv"], result["curves"]["pytorch"]
    assert len(ours["step_loss"]) == 2 * 43
    for i, (a, b) in enumerate(zip(ours["step_loss"], ref["step_loss"])):
        assert a == pytest.approx(b, rel=1e-9), f"step {i}"
    assert ours["acc"] == ref["acc"]
    assert ours["acc"][-1] > 0.85  # and it is learning


def test_pure_pytorch_twin_has_no_dsconv(example):
    """The --compare twin: the same state_dict, no dsconv module or op, same outputs (train and
    eval mode: eval-mode DepthwiseSeparableConv2d runs the fused kernel with BatchNorm folded)."""
    import dsconv_ext

    torch.manual_seed(0)
    model = dsconv_ext.convert(example.build_model(8))
    twin = example.pure_pytorch_twin(model)
    assert list(twin.state_dict()) == list(model.state_dict())
    assert not any(type(m).__module__.startswith("dsconv_ext") for m in twin.modules())
    x = torch.randn(16, 1, 8, 8)
    assert example._count_dsconv_calls(twin, x) == 0
    assert example._count_dsconv_calls(model, x) > 0
    for train in (True, False):
        model.train(train)
        twin.train(train)
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(1)
        b = twin(x)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_script_runs_from_the_command_line():
    out = subprocess.run(
        [sys.executable, SCRIPT, "--epochs", "1", "--threads", "1", "--width", "8", "--compare"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "final test accuracy: dsconv" in out.stdout and "pytorch" in out.stdout
