"""Bytes moved and FLOPs of one depthwise layer: the roofline terms the benchmark reports.

With X = N*C*H*W input elements, Y = N*OC*OH*OW output elements, W = OC*k*k weights, B = OC
(bias, when present) and s = the element size in bytes:

forward      bytes = s * (X + W + B + Y)           read x, w, b; write y
fwd+bwd      bytes = s * (3X + 2Y + 3W + 2B)       the forward, plus the backward's
                                                   read dy (Y), read x again for dw (X),
                                                   write dx (X), read w (W), write dw (W),
                                                   write db (B)

These are compulsory traffic: each tensor is read or written once per pass, as a kernel that
fuses grad-input and grad-weight would do. A backward that reads dy twice (once per gradient)
moves Y more bytes than counted, so its GB/s here is a lower bound of what it really moved.

FLOPs: forward = 2 * k*k * N*OC*OH*OW (a multiply and an add per tap); the backward computes
grad-input and grad-weight with the same number of multiply-adds each, so fwd+bwd = 3x forward.
"""
from __future__ import annotations

from .suites import Layer

PASSES = ("fwd", "fwd+bwd")


def element_counts(layer: Layer) -> dict:
    return {
        "x": layer.n * layer.c * layer.h * layer.w,
        "y": layer.n * layer.oc * layer.oh * layer.ow,
        "w": layer.oc * layer.k * layer.k,
        "b": layer.oc if layer.bias else 0,
    }


def bytes_moved(layer: Layer, itemsize: int, pass_: str) -> int:
    e = element_counts(layer)
    if pass_ == "fwd":
        return itemsize * (e["x"] + e["w"] + e["b"] + e["y"])
    if pass_ == "fwd+bwd":
        return itemsize * (3 * e["x"] + 2 * e["y"] + 3 * e["w"] + 2 * e["b"])
    raise ValueError(pass_)


def flops(layer: Layer, pass_: str) -> int:
    fwd = 2 * layer.k * layer.k * layer.n * layer.oc * layer.oh * layer.ow
    return fwd if pass_ == "fwd" else 3 * fwd
