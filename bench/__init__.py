"""Benchmark of dsconv_ext against PyTorch: `python -m bench --help`.

Suites of real networks' depthwise layers (forward and forward+backward, time, GB/s against the
machine's copy bandwidth, GFLOP/s), separable vs standard convolution, and whole torchvision
models converted with dsconv_ext.convert. Writes a terminal table, <out>/<device>-latest.json,
<out>/<device>-latest.md and PNG plots.
"""
