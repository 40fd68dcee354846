"""The benchmark (python -m bench) runs end to end in-process on its tiniest config and writes the
JSON and markdown reports with the expected contents."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds bench/

from bench import cli, suites  # noqa: E402

LAYER_KEYS = {
    "suite", "layer", "n", "c", "h", "w", "k", "stride", "dtype", "layout", "pass", "ours_ms", "torch_ms",
    "speedup", "bytes", "flops", "ours_gbps", "torch_gbps", "ours_pct_copy", "torch_pct_copy", "ours_gflops",
    "torch_gflops", "max_abs_diff", "match",
}
SEPARABLE_KEYS = {"case", "standard_ms", "torch_ms", "ours_ms", "ours_impl", "theory_ratio", "torch_ratio", "ours_ratio", "match"}
MODEL_KEYS = {"model", "mode", "ours_ms", "torch_ms", "speedup", "max_abs_diff", "match", "converted_layers"}
MACHINE_KEYS = {"cpu", "isa", "threads", "torch", "dsconv_ext", "git_commit", "gpu", "date", "device"}


def test_smoke_run_writes_json_and_markdown(tmp_path, capsys):
    # One thread: on a busy machine, tiny ops with two OpenMP threads wait for time slices.
    argv = ["--suite", "smoke", "--device", "cpu", "--threads", "1", "--repeats", "1", "--budget", "0", "--copy-mb", "8",
            "--no-plots", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Geomean speedup" in printed and "1x8x8x8 k3 s1" in printed

    data = json.loads((tmp_path / "cpu-latest.json").read_text())
    assert {"schema", "machine", "config", "copy_bandwidth", "layers", "separable", "models", "summary", "errors"} <= set(data)
    assert MACHINE_KEYS <= set(data["machine"])
    assert data["errors"] == []
    assert data["copy_bandwidth"]["reference_gbps"] > 0
    assert data["machine"]["threads"] == 1 and data["config"]["threads"] == 1

    # one tiny layer x 2 layouts x 2 passes, one separable case x 2 layouts, one tiny model x 2 layouts
    # x 3 modes (inference, inference-fused, train-step)
    assert len(data["layers"]) == 4 and len(data["separable"]) == 2 and len(data["models"]) == 6
    for row in data["layers"]:
        assert LAYER_KEYS <= set(row)
        assert row["match"] and row["ours_ms"] > 0 and row["torch_ms"] > 0
    assert {(r["layout"], r["pass"]) for r in data["layers"]} == {
        (layout, p) for layout in ("nchw", "channels_last") for p in ("fwd", "fwd+bwd")
    }
    assert all(SEPARABLE_KEYS <= set(r) and r["match"] for r in data["separable"])
    assert all(MODEL_KEYS <= set(r) and r["match"] for r in data["models"])
    assert {r["mode"] for r in data["models"]} == {"inference", "inference-fused", "train-step"}
    assert {(s["layout"], s["pass"]) for s in data["summary"]["layers"]} == {
        (layout, p) for layout in ("nchw", "channels_last") for p in ("fwd", "fwd+bwd")
    }

    md = (tmp_path / "cpu-latest.md").read_text()
    for heading in ("# dsconv_ext benchmark", "## Geomean speedup", "## smoke", "## separable", "## models", "## Method"):
        assert heading in md
    assert not list(tmp_path.glob("*.png"))  # --no-plots


def test_traffic_formulas():
    from bench import traffic

    layer = suites.Layer(2, 4, 8, 8, 3, stride=2, bias=True)  # output 2x4x4x4
    x, y, w, b = 2 * 4 * 64, 2 * 4 * 16, 4 * 9, 4
    assert traffic.bytes_moved(layer, 4, "fwd") == 4 * (x + w + b + y)
    assert traffic.bytes_moved(layer, 2, "fwd+bwd") == 2 * (3 * x + 2 * y + 3 * w + 2 * b)
    assert traffic.flops(layer, "fwd") == 2 * 9 * y
    assert traffic.flops(layer, "fwd+bwd") == 3 * 2 * 9 * y


def test_suite_selection():
    assert suites.resolve(["all"]) == suites.DEFAULT_SUITES
    assert "smoke" not in suites.DEFAULT_SUITES
    assert suites.resolve(["convnext_t,separable", "convnext_t"]) == ["convnext_t", "separable"]
    with pytest.raises(ValueError):
        suites.resolve(["nope"])
    # every suite has items in both modes, and full batches follow the layer's kernel size
    for name in suites.DEFAULT_SUITES:
        s = suites.SUITES[name]
        assert s.full and s.quick
        for item in s.full:
            if isinstance(item, suites.Layer):
                assert item.n == (suites.FULL_BATCH if item.k <= 7 else suites.FULL_BATCH_LARGE_K)


def test_compare_alternates_rounds_and_keeps_first_outputs():
    from bench.timing import TimingConfig, compare

    calls = []

    def make(name):
        def fn():
            calls.append(name)
            return f"{name}{len(calls)}"

        return fn

    cfg = TimingConfig(min_rounds=3, max_rounds=3, budget_s=0.0, min_round_s=0.0)
    t = compare({"a": make("a"), "b": make("b")}, cfg)
    # two warm-up calls each, then rounds a, b, a, b, a, b
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert t["a"].output == "a1" and t["b"].output == "b3"
    assert len(t["a"].samples_s) == 3 and t["a"].calls_per_round == 1
    calls.clear()
    t = compare({"a": make("a"), "b": make("b")}, TimingConfig(min_rounds=3, max_rounds=1, budget_s=0.0, min_round_s=0.0))
    assert calls == ["a", "a", "b", "b", "a", "b"]  # max_rounds (--repeats 1) wins over min_rounds


def test_separable_uses_a_fused_op_when_present(monkeypatch):
    import torch
    import torch.nn.functional as F

    import dsconv_ext
    from bench import separable
    from bench.timing import TimingConfig

    def fake_fused(x, dw_weight, pw_weight, dw_bias=None, pw_bias=None, stride=1, padding=0, dilation=1):
        y = F.conv2d(x, dw_weight, dw_bias, stride, padding, dilation, groups=x.shape[1])
        return F.conv2d(y, pw_weight, pw_bias)

    monkeypatch.setattr(dsconv_ext, "separable_conv2d", fake_fused, raising=False)
    monkeypatch.setattr(dsconv_ext, "has_separable_kernel", lambda device: True, raising=False)
    separable.fused_status.cache_clear()
    try:
        cfg = TimingConfig(min_rounds=1, max_rounds=1, budget_s=0.0, min_round_s=0.0)
        (row,) = separable.measure(suites.SeparableCase(1, 8, 8, 8), torch.float32, "nchw", "cpu", cfg)
        assert row["ours_impl"] == "fused" and row["match"]
        monkeypatch.setattr(dsconv_ext, "separable_conv2d", lambda *a, **k: a[0], raising=False)  # wrong result
        separable.fused_status.cache_clear()
        (row,) = separable.measure(suites.SeparableCase(1, 8, 8, 8), torch.float32, "nchw", "cpu", cfg)
        assert row["ours_impl"].startswith("dw+pw (fused op: mismatch")
    finally:
        separable.fused_status.cache_clear()
