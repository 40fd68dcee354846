"""Bad inputs raise RuntimeError / ValueError / TypeError with a message naming the problem."""
import pytest
import torch

import dsconv_ext

D = dsconv_ext.depthwise_conv2d
fwd_op = torch.ops.dsconv.depthwise_conv2d
bwd_op = torch.ops.dsconv.depthwise_conv2d_backward


def x(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*(shape or (2, 3, 8, 8)), device=device).to(dtype)


def w(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*(shape or (3, 1, 3, 3)), device=device).to(dtype)


def b(n=3, dtype=torch.float32, device="cpu"):
    return torch.randn(n, device=device).to(dtype)


def go(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*(shape or (2, 3, 6, 6)), device=device).to(dtype)


P = ([1, 1], [0, 0, 0, 0], [1, 1])  # the ops' stride, padding, dilation for x() and w()
ALL = [True, True, True]

# name -> (call(device), exception type(s), regex naming the problem)
ERRORS = {
    # dimensions
    "input_2d": (lambda d: D(x(3, 8, device=d), w(device=d)), ValueError, r"3-D \(unbatched\) or 4-D .* got 2-D"),
    "input_5d": (lambda d: D(x(1, 2, 3, 8, 8, device=d), w(device=d)), ValueError, r"got 5-D"),
    "weight_3d": (lambda d: D(x(device=d), w(3, 3, 3, device=d)), ValueError, r"4-D weight .* got 3-D"),
    "weight_5d": (lambda d: D(x(device=d), w(3, 1, 1, 3, 3, device=d)), ValueError, r"4-D weight .* got 5-D"),
    # channels / shapes
    "weight_oc_not_multiple": (lambda d: D(x(device=d), w(4, 1, 3, 3, device=d)), RuntimeError, r"positive multiple"),
    "weight_oc_fewer_than_c": (lambda d: D(x(device=d), w(2, 1, 3, 3, device=d)), RuntimeError, r"positive multiple"),
    "weight_dim1_not_1": (lambda d: D(x(device=d), w(3, 2, 3, 3, device=d)), RuntimeError, r"weight must (have shape|be) \(C\*m"),
    "zero_channels": (lambda d: D(x(2, 0, 8, 8, device=d), w(0, 1, 3, 3, device=d)), RuntimeError, r"0 channels|positive multiple"),
    "empty_kernel": (lambda d: D(x(device=d), w(3, 1, 0, 3, device=d)), RuntimeError, r"empty kernel"),
    "bias_wrong_length": (lambda d: D(x(device=d), w(device=d), b(4, device=d)), RuntimeError, r"bias must have shape \(3,\)"),
    "bias_2d": (lambda d: D(x(device=d), w(device=d), b(3, device=d).view(3, 1)), RuntimeError, r"bias must have shape \(3,\)"),
    "bias_for_multiplier": (lambda d: D(x(device=d), w(6, 1, 3, 3, device=d), b(3, device=d)), RuntimeError, r"bias must have shape \(6,\)"),
    # dtypes
    "bias_wrong_dtype": (
        lambda d: D(x(device=d), w(device=d), b(dtype=torch.float64, device=d)),
        RuntimeError,
        r"bias dtype \(Double\)",
    ),
    "input_weight_dtype_mismatch": (
        lambda d: D(x(device=d), w(dtype=torch.float64, device=d)),
        RuntimeError,
        r"input dtype \(Float\) and weight dtype \(Double\)",
    ),
    "input_weight_bf16_f16": (
        lambda d: D(x(dtype=torch.bfloat16, device=d), w(dtype=torch.float16, device=d)),
        RuntimeError,
        r"input dtype \(BFloat16\) and weight dtype \(Half\)",
    ),
    "integer_input": (
        lambda d: D(x(dtype=torch.int32, device=d), w(dtype=torch.int32, device=d)),
        RuntimeError,
        r"dtype Int; supported dtypes are float32, float64, bfloat16 and float16",
    ),
    "integer_input_float_weight": (
        lambda d: D(x(dtype=torch.int64, device=d), w(device=d)),
        RuntimeError,
        r"dtype Long; supported dtypes",
    ),
    "complex_input": (
        lambda d: D(x(device=d).to(torch.complex64), w(device=d).to(torch.complex64)),
        RuntimeError,
        r"supported dtypes",
    ),
    # stride / dilation / padding values
    "stride_0": (lambda d: D(x(device=d), w(device=d), stride=0), RuntimeError, r"stride must be positive"),
    "stride_negative": (lambda d: D(x(device=d), w(device=d), stride=(1, -1)), RuntimeError, r"stride must be positive"),
    "dilation_0": (lambda d: D(x(device=d), w(device=d), dilation=0), RuntimeError, r"dilation must be positive"),
    "dilation_negative": (lambda d: D(x(device=d), w(device=d), dilation=(-2, 1)), RuntimeError, r"dilation must be positive"),
    "padding_negative": (lambda d: D(x(device=d), w(device=d), padding=-1), RuntimeError, r"padding must be non-negative"),
    "padding_negative_pair": (lambda d: D(x(device=d), w(device=d), padding=(0, -2)), RuntimeError, r"padding must be non-negative"),
    "kernel_larger_than_input": (
        lambda d: D(x(1, 3, 4, 4, device=d), w(3, 1, 5, 5, device=d)),
        RuntimeError,
        r"kernel can't be larger than the padded input",
    ),
    "dilated_kernel_larger_than_padded": (
        lambda d: D(x(1, 3, 4, 4, device=d), w(3, 1, 3, 3, device=d), padding=1, dilation=3),
        RuntimeError,
        r"kernel can't be larger than the padded input",
    ),
    "kernel_larger_one_axis": (
        lambda d: D(x(1, 3, 8, 2, device=d), w(3, 1, 1, 3, device=d), padding=(3, 0)),
        RuntimeError,
        r"kernel can't be larger than the padded input",
    ),
    # argument forms
    "same_with_stride_2": (lambda d: D(x(device=d), w(device=d), stride=2, padding="same"), ValueError, r"padding='same' is not supported for strided"),
    "same_with_stride_1x2": (lambda d: D(x(device=d), w(device=d), stride=(1, 2), padding="same"), ValueError, r"padding='same' is not supported for strided"),
    "unknown_padding_string": (lambda d: D(x(device=d), w(device=d), padding="full"), ValueError, r"invalid padding string 'full'"),
    "padding_tuple_of_3": (lambda d: D(x(device=d), w(device=d), padding=(1, 1, 1)), ValueError, r"padding must be an int or a pair of ints"),
    "padding_tuple_of_4": (lambda d: D(x(device=d), w(device=d), padding=(1, 1, 1, 1)), ValueError, r"padding must be an int or a pair of ints"),
    "padding_float": (lambda d: D(x(device=d), w(device=d), padding=1.0), TypeError, r"padding must be an int or a pair of ints, got float"),
    "stride_float": (lambda d: D(x(device=d), w(device=d), stride=1.5), TypeError, r"stride must be an int or a pair of ints, got float"),
    "stride_tuple_of_3": (lambda d: D(x(device=d), w(device=d), stride=(1, 1, 1)), ValueError, r"stride must be an int or a pair of ints"),
    "dilation_pair_of_floats": (lambda d: D(x(device=d), w(device=d), dilation=(1.0, 2.0)), ValueError, r"dilation must be an int or a pair of ints"),
    "stride_bool": (lambda d: D(x(device=d), w(device=d), stride=True), TypeError, r"stride must be an int or a pair of ints"),
    "non_tensor_input": (lambda d: D([[1.0, 2.0]], w(device=d)), TypeError, r"input must be a Tensor, got list"),
    "non_tensor_weight": (lambda d: D(x(device=d), 3.0), TypeError, r"weight must be a Tensor, got float"),
    "non_tensor_bias": (lambda d: D(x(device=d), w(device=d), [0.0, 0.0, 0.0]), TypeError, r"bias must be a Tensor or None, got list"),
    # the ops called directly
    "op_input_3d": (lambda d: fwd_op(x(3, 8, 8, device=d), w(device=d), None, *P), RuntimeError, r"4-D input"),
    "op_stride_len_1": (lambda d: fwd_op(x(device=d), w(device=d), None, [1], [0, 0, 0, 0], [1, 1]), RuntimeError, r"stride to have 2 values, got 1"),
    "op_stride_len_3": (lambda d: fwd_op(x(device=d), w(device=d), None, [1, 1, 1], [0, 0, 0, 0], [1, 1]), RuntimeError, r"stride to have 2 values, got 3"),
    "op_padding_len_2": (lambda d: fwd_op(x(device=d), w(device=d), None, [1, 1], [0, 0], [1, 1]), RuntimeError, r"padding .* to have 4 values, got 2"),
    "op_padding_len_5": (lambda d: fwd_op(x(device=d), w(device=d), None, [1, 1], [0] * 5, [1, 1]), RuntimeError, r"padding .* to have 4 values, got 5"),
    "op_dilation_len_3": (lambda d: fwd_op(x(device=d), w(device=d), None, [1, 1], [0] * 4, [1, 1, 1]), RuntimeError, r"dilation to have 2 values, got 3"),
    "op_negative_bottom_padding": (lambda d: fwd_op(x(device=d), w(device=d), None, [1, 1], [0, -1, 0, 0], [1, 1]), RuntimeError, r"padding must be non-negative"),
    "bwd_op_padding_len_2": (lambda d: bwd_op(go(device=d), x(device=d), w(device=d), [1, 1], [0, 0], [1, 1], ALL), RuntimeError, r"padding .* to have 4 values, got 2"),
    "bwd_op_stride_len_1": (lambda d: bwd_op(go(device=d), x(device=d), w(device=d), [1], [0] * 4, [1, 1], ALL), RuntimeError, r"stride to have 2 values, got 1"),
    "bwd_op_mask_len_2": (lambda d: bwd_op(go(device=d), x(device=d), w(device=d), *P, [True, True]), RuntimeError, r"2 elements .* size 3"),
    "bwd_op_mask_len_4": (lambda d: bwd_op(go(device=d), x(device=d), w(device=d), *P, [True] * 4), RuntimeError, r"4 elements .* size 3"),
    "bwd_op_stride_0": (lambda d: bwd_op(go(device=d), x(device=d), w(device=d), [0, 1], [0] * 4, [1, 1], ALL), RuntimeError, r"stride must be positive"),
    # the backward op with a wrong grad_output
    "bwd_grad_output_wrong_hw": (
        lambda d: bwd_op(go(2, 3, 5, 5, device=d), x(device=d), w(device=d), *P, ALL),
        RuntimeError,
        r"grad_output has shape \[2, 3, 5, 5\] but the forward output has shape \[2, 3, 6, 6\]",
    ),
    "bwd_grad_output_wrong_channels": (
        lambda d: bwd_op(go(2, 6, 6, 6, device=d), x(device=d), w(device=d), *P, ALL),
        RuntimeError,
        r"grad_output has shape \[2, 6, 6, 6\] but the forward output",
    ),
    "bwd_grad_output_wrong_batch": (
        lambda d: bwd_op(go(3, 3, 6, 6, device=d), x(device=d), w(device=d), *P, [False, True, False]),
        RuntimeError,
        r"grad_output has shape \[3, 3, 6, 6\]",
    ),
    "bwd_grad_output_3d": (
        lambda d: bwd_op(go(3, 6, 6, device=d), x(device=d), w(device=d), *P, [True, False, False]),
        RuntimeError,
        r"grad_output has shape \[3, 6, 6\]",
    ),
    "bwd_grad_output_dtype": (
        lambda d: bwd_op(go(dtype=torch.float64, device=d), x(device=d), w(device=d), *P, ALL),
        RuntimeError,
        r"grad_output dtype \(Double\) and input dtype \(Float\)",
    ),
    "bwd_input_dtype": (
        lambda d: bwd_op(go(device=d), x(device=d), w(dtype=torch.float64, device=d), *P, ALL),
        RuntimeError,
        r"input dtype \(Float\) and weight dtype \(Double\)",
    ),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_input_raises(name):
    call, exc, match = ERRORS[name]
    with pytest.raises(exc, match=match):
        call("cpu")


def test_module_bad_input():
    m = dsconv_ext.DepthwiseConv2d(4, 8, 3, padding=1)
    with pytest.raises(RuntimeError, match="positive multiple"):
        m(torch.randn(1, 3, 8, 8))
    with pytest.raises(RuntimeError, match=r"input dtype \(Double\) and weight dtype \(Float\)"):
        m(torch.randn(1, 4, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="got 2-D"):
        m(torch.randn(4, 8))


def test_error_leaves_no_autograd_state():
    """A failed call doesn't poison later calls (no partial registration / global state)."""
    xx = x().requires_grad_()
    with pytest.raises(RuntimeError):
        D(xx, w(4, 1, 3, 3))
    y = D(xx, w(), None, 1, 1)
    y.sum().backward()
    assert xx.grad.shape == xx.shape


# ---------------------------------------------------------------------------------------------
# Device mismatch. Only the meta device is available without a GPU: a CPU input with a meta
# weight / bias dispatches to the fake (Meta) kernel, which has the higher dispatch priority.

@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: D(x(), w(device="meta")), id="cpu_input_meta_weight"),
        pytest.param(lambda: D(x(), w(), b(device="meta")), id="cpu_input_meta_bias"),
        pytest.param(
            lambda: bwd_op(go(), x(), w(device="meta"), *P, ALL),
            id="bwd_cpu_input_meta_weight",
        ),
    ],
)
def test_device_mismatch_raises(call):
    with pytest.raises(RuntimeError, match=r"(?i)device"):
        call()


# ---------------------------------------------------------------------------------------------
# The same table on meta tensors: the fake kernels (used for meta tensors and torch.compile
# tracing) should reject what the CPU kernels reject, with a RuntimeError / ValueError / TypeError.

# Python-level checks only reachable before the op; identical on every device: skip on meta.
_PY_ONLY = {n for n in ERRORS if n.startswith("non_tensor")}


def _meta_params():
    for name in ERRORS:
        if name in _PY_ONLY:
            continue
        yield pytest.param(name, id=name)




@pytest.mark.parametrize("name", list(_meta_params()))
def test_bad_input_raises_on_meta(name):
    call, exc, match = ERRORS[name]
    with pytest.raises(exc, match=match):
        call("meta")
