"""Argument checks for the fake (meta) kernels, mirroring csrc/dw_checks.cpp message for message,
so meta tensors and torch.compile tracing reject exactly what the real kernels reject."""
import torch

_SUPPORTED = (torch.float32, torch.float64, torch.bfloat16, torch.float16)

# c10's names for dtypes, as the C++ messages print them.
_C10_NAME = {
    torch.float32: "Float", torch.float64: "Double", torch.bfloat16: "BFloat16", torch.float16: "Half",
    torch.int8: "Char", torch.uint8: "Byte", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
    torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
}


def _name(dtype) -> str:
    return _C10_NAME.get(dtype, str(dtype).replace("torch.", ""))


def _shape(t) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _fail(msg: str):
    raise RuntimeError("dsconv: " + msg)


def _check_list(v, n, name):
    if len(v) != n:
        _fail(f"expected {name} to have {n} values, got {len(v)}")


def _check_device(a, b, a_name, b_name):
    if a.device != b.device:
        _fail(f"{a_name} is on {a.device} but {b_name} is on {b.device}; they must be on the same device")


def check_forward(input, weight, bias, stride, padding, dilation):
    """Returns (OH, OW) or raises RuntimeError with the same message as the C++ op."""
    _check_list(stride, 2, "stride")
    _check_list(padding, 4, "padding (top, bottom, left, right)")
    _check_list(dilation, 2, "dilation")
    if input.dim() != 4:
        _fail(f"expected a 4-D input (N, C, H, W), got a {input.dim()}-D tensor of shape {_shape(input)}")
    if weight.dim() != 4:
        _fail(f"expected a 4-D weight (C*multiplier, 1, kH, kW), got a {weight.dim()}-D tensor of shape {_shape(weight)}")
    if input.dtype not in _SUPPORTED:
        _fail(f"input has dtype {_name(input.dtype)}; supported dtypes are float32, float64, bfloat16 and float16")
    if weight.dtype != input.dtype:
        _fail(f"input dtype ({_name(input.dtype)}) and weight dtype ({_name(weight.dtype)}) should be the same")
    _check_device(input, weight, "input", "weight")
    C = input.shape[1]
    if C == 0:
        _fail("input has 0 channels; a depthwise convolution needs at least one")
    if weight.shape[1] != 1:
        _fail(f"depthwise weight must have shape (C*multiplier, 1, kH, kW), got {_shape(weight)} (dimension 1 must be 1)")
    OC = weight.shape[0]
    if not (OC > 0 and OC % C == 0):
        _fail(f"weight has {OC} output channels, which is not a positive multiple of the input's {C} channels")
    if weight.shape[2] == 0 or weight.shape[3] == 0:
        _fail(f"weight has an empty kernel {_shape(weight)}")
    if bias is not None:
        if bias.dim() != 1 or bias.shape[0] != OC:
            _fail(f"bias must have shape ({OC},) to match the weight's output channels, got {_shape(bias)}")
        if bias.dtype != input.dtype:
            _fail(f"input dtype ({_name(input.dtype)}) and bias dtype ({_name(bias.dtype)}) should be the same")
        _check_device(input, bias, "input", "bias")
    for i in range(2):  # in the C++ check's order: stride[0], dilation[0], stride[1], dilation[1]
        if stride[i] <= 0:
            _fail(f"stride must be positive, got {list(stride)}")
        if dilation[i] <= 0:
            _fail(f"dilation must be positive, got {list(dilation)}")
    if any(p < 0 for p in padding):
        _fail(f"padding must be non-negative, got {list(padding)}")
    padded_h = input.shape[2] + padding[0] + padding[1]
    padded_w = input.shape[3] + padding[2] + padding[3]
    eff_kh = dilation[0] * (weight.shape[2] - 1) + 1
    eff_kw = dilation[1] * (weight.shape[3] - 1) + 1
    if padded_h < eff_kh or padded_w < eff_kw:
        _fail(
            f"padded input size ({padded_h} x {padded_w}) is smaller than the dilated kernel "
            f"({eff_kh} x {eff_kw}); the kernel can't be larger than the padded input"
        )
    if input.shape[0] != 0 and (input.shape[2] == 0 or input.shape[3] == 0):
        _fail(
            f"input of shape {_shape(input)} has an empty spatial dimension; as F.conv2d, only a zero batch "
            f"is supported with H or W = 0"
        )
    return (padded_h - eff_kh) // stride[0] + 1, (padded_w - eff_kw) // stride[1] + 1


def check_backward(grad_output, input, weight, stride, padding, dilation, output_mask):
    if len(output_mask) != 3:
        _fail(f"output_mask has {len(output_mask)} elements but must have size 3")
    oh, ow = check_forward(input, weight, None, stride, padding, dilation)
    expected = (input.shape[0], weight.shape[0], oh, ow)
    if grad_output.dim() != 4 or tuple(grad_output.shape) != expected:
        _fail(
            f"grad_output has shape {_shape(grad_output)} but the forward output has shape "
            f"[{', '.join(str(s) for s in expected)}]"
        )
    if grad_output.dtype != input.dtype:
        _fail(f"grad_output dtype ({_name(grad_output.dtype)}) and input dtype ({_name(input.dtype)}) should be the same")
    if grad_output.device != input.device:
        _fail(f"grad_output is on {grad_output.device} but input is on {input.device}")
