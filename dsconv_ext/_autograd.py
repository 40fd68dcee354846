"""Autograd of the backward op (double backward), registered with torch.library.register_autograd.

The forward op's autograd is in C++ (csrc/autograd.cpp: the Python autograd.Function around it
cost 0.45-1.1 ms per forward+backward on small layers). Its backward calls
dsconv::depthwise_conv2d_backward through the dispatcher; that op is itself differentiable here
(its derivative is expressed with the forward and backward ops again), so double backward
(gradgradcheck) works as it does for nn.Conv2d.
"""
import torch

_ops = torch.ops.dsconv


# --- backward op (double backward) -------------------------------------------------------------
# grad_input  = conv_transpose(grad_output, weight)   (bilinear in grad_output, weight)
# grad_weight = correlate(grad_output, input)          (bilinear in grad_output, input)
# grad_bias   = sum(grad_output)
# Given gradients gg_i, gg_w, gg_b of a loss w.r.t. those three outputs:
#   d/d grad_output = conv(gg_i, weight) + conv(input, gg_w, gg_b)
#   d/d input       = grad_input of conv(input, gg_w)     at grad_output
#   d/d weight      = grad_weight of conv(gg_i, weight)   at grad_output
def _backward_setup(ctx, inputs, output):
    grad_output, input, weight, stride, padding, dilation, mask = inputs
    ctx.save_for_backward(grad_output, input, weight)
    ctx.conv = (stride, padding, dilation)
    ctx.mask = list(mask)


def _backward_backward(ctx, gg_i, gg_w, gg_b):
    grad_output, input, weight = ctx.saved_tensors
    conv = ctx.conv
    use_i = ctx.mask[0] and gg_i is not None
    use_w = ctx.mask[1] and gg_w is not None
    use_b = ctx.mask[2] and gg_b is not None

    d_grad_output = None
    if ctx.needs_input_grad[0]:
        terms = []
        if use_i:
            terms.append(_ops.depthwise_conv2d(gg_i, weight, None, *conv))
        if use_w:
            terms.append(_ops.depthwise_conv2d(input, gg_w, gg_b if use_b else None, *conv))
        elif use_b:
            terms.append(gg_b.view(1, -1, 1, 1).expand_as(grad_output))
        for t in terms:
            d_grad_output = t if d_grad_output is None else d_grad_output + t

    d_input = None
    if ctx.needs_input_grad[1] and use_w:
        d_input = _ops.depthwise_conv2d_backward(grad_output, input, gg_w, *conv, [True, False, False])[0]

    d_weight = None
    if ctx.needs_input_grad[2] and use_i:
        d_weight = _ops.depthwise_conv2d_backward(grad_output, gg_i, weight, *conv, [False, True, False])[1]

    return d_grad_output, d_input, d_weight, None, None, None, None


torch.library.register_autograd(
    "dsconv::depthwise_conv2d_backward", _backward_backward, setup_context=_backward_setup
)
