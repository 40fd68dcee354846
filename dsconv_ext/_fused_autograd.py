"""Autograd for dsconv::separable_conv2d, registered with torch.library.register_autograd.

The forward saves only its inputs (input and weights), never the depthwise output or the
pre-activation pointwise output. The backward recomputes the composition
    dsconv.depthwise_conv2d -> act -> F.conv2d 1x1 -> pw_act
under torch.enable_grad and differentiates it with torch.autograd.grad. So in training the block
holds no activation memory of its own beyond its input (which the previous layer usually keeps
anyway), at the price of one more depthwise + pointwise forward in the backward.

When the backward itself runs with grad mode on (create_graph=True), the recomputed graph is
built on the saved inputs, so double backward works too.
"""
import torch

from .fused import separable_conv2d_unfused


def _setup_context(ctx, inputs, output):
    input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, act, pw_act = inputs
    ctx.save_for_backward(input, dw_weight, dw_bias, pw_weight, pw_bias)
    ctx.conv = (stride, padding, dilation, act, pw_act)


def _backward(ctx, grad):
    saved = ctx.saved_tensors  # input, dw_weight, dw_bias, pw_weight, pw_bias
    needs = [ctx.needs_input_grad[i] for i in range(5)]
    if not any(needs):
        return (None,) * 10
    stride, padding, dilation, act, pw_act = ctx.conv
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        leaves = []
        for t, need in zip(saved, needs):
            if t is None:
                leaves.append(None)
            elif create_graph and t.requires_grad:
                leaves.append(t.view_as(t))  # keeps the link to the saved input (double backward)
            else:
                leaves.append(t.detach().requires_grad_(need))
        out = separable_conv2d_unfused(
            leaves[0], leaves[1], leaves[3], leaves[2], leaves[4], stride, padding, dilation, act, pw_act
        )
        wrt = [leaves[i] for i in range(5) if needs[i]]
        grads = torch.autograd.grad(out, wrt, grad, create_graph=create_graph, allow_unused=True)
    result = [None] * 10
    it = iter(grads)
    for i in range(5):
        if needs[i]:
            g = next(it)
            result[i] = g if g is not None else torch.zeros_like(saved[i])
    return tuple(result)


torch.library.register_autograd("dsconv::separable_conv2d", _backward, setup_context=_setup_context)
