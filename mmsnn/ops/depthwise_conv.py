"""Depthwise convolution whose weight gradient is itself a depthwise convolution (CPU training).

oneDNN runs a depthwise convolution's forward pass and input gradient with its depthwise
kernels, but for the Meta-SDT's 7x7 depthwise convs (the ``SepConv`` of the conv blocks) its
weight gradient falls back to a generic GEMM implementation (``x64:gemm:jit`` in
``ONEDNN_VERBOSE``), 10-20 times slower than the forward pass: on an AMD EPYC [avx2], one
thread, 32 channels at 400x608, forward 0.04 s, weight gradient 0.63 s. In the s-size SRB
backbone's train step at 800x1216 the four 7x7 weight gradients took 1.2 of 6.5 s.

The weight gradient is a correlation of each channel's input with its output gradient::

    dW[c, i, j] = sum over n, h, w of  g[n, c, h, w] * x[n, c, h + i - p, w + j - p]

which is the depthwise convolution (padding ``p``) of the input ``x`` by the output gradient
``g`` taken as the kernel: one call of oneDNN's fast depthwise forward kernel, with the
batch folded into the channels (``groups = N * C``), then a sum over the batch. The output
is ``k x k`` because ``H + 2p - (H + 2p - k + 1) + 1 = k``. Same sums in another order, so
float32 results differ from oneDNN's at rounding level (``tests/test_ops/test_depthwise_conv.py``
bounds both against float64).

Only where it pays: CPU tensors (cuDNN has its own depthwise weight-gradient kernels), stride
1, no dilation, one filter per channel, zero padding, kernels larger than 3x3 (oneDNN's own
depthwise weight gradient covers 3x3, where it is a little faster). Measured side by side,
per shape, by ``tools/analysis/benchmark_depthwise_grad.py``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.runtime import autocast_on


def depthwise_weight_grad(x, grad, kernel_size, padding):
    """The weight gradient ``[C, 1, kh, kw]`` of a stride-1 depthwise convolution of ``x``
    (``[N, C, H, W]``, padding ``padding``) whose output gradient is ``grad``, as a depthwise
    convolution of ``x`` by ``grad`` (see the module docstring)."""
    n, c, h, w = x.shape
    kh, kw = kernel_size
    out = F.conv2d(x.reshape(1, n * c, h, w), grad.reshape(n * c, 1, *grad.shape[2:]),
                   padding=padding, groups=n * c)
    out = out.view(n, c, kh, kw)
    return (out[0] if n == 1 else out.sum(0)).unsqueeze(1)


def aten_depthwise_backward(grad, x, weight, padding, output_mask):
    """aten's own gradients (input, weight, bias: those ``output_mask`` asks for) of the
    stride-1 depthwise ``F.conv2d(x, weight, None, 1, padding, 1, groups=C)``: what autograd
    computes for it."""
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], list(padding), [1, 1], False, [0, 0], weight.shape[0],
        output_mask)


class _DepthwiseConv2dFunction(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, 1, padding, 1, groups=C)``; the backward computes the input
    gradient with aten's own ``convolution_backward`` and the weight gradient with
    :func:`depthwise_weight_grad`."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, 1, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = aten_depthwise_backward(grad, x, weight, ctx.padding,
                                             [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(x, grad, weight.shape[2:], ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def depthwise_conv2d(x, weight, bias=None, padding=(0, 0)):
    """``F.conv2d(x, weight, bias, 1, padding, 1, groups=C)`` of a depthwise ``weight``
    (``[C, 1, kh, kw]``) whose backward computes the weight gradient with
    :func:`depthwise_weight_grad`, for any kernel size."""
    return _DepthwiseConv2dFunction.apply(x, weight, bias, tuple(padding))


def is_stride1_depthwise(conv):
    """Whether ``conv`` (an ``nn.Conv2d``) is depthwise (one filter per channel) with stride 1,
    no dilation and explicit zero padding: the convs :func:`depthwise_weight_grad` computes."""
    return (conv.groups == conv.in_channels == conv.out_channels and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.padding_mode == 'zeros'
            and isinstance(conv.padding, tuple))


def depthwise_applies(conv):
    """Whether :class:`DepthwiseConv2d` takes ``conv``'s (an ``nn.Conv2d``) shape: a stride-1
    depthwise conv (:func:`is_stride1_depthwise`) with a kernel larger than 3x3. oneDNN has a
    depthwise weight-gradient kernel of its own for 3x3, a little faster than the rewrite
    (0.8-0.9x, ``tools/analysis/benchmark_depthwise_grad.py``); from 5x5 on it takes GEMM."""
    return is_stride1_depthwise(conv) and conv.kernel_size[0] * conv.kernel_size[1] > 9


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state dict) for a depthwise convolution whose CPU
    training backward computes the weight gradient as a depthwise convolution (see the module
    docstring). Everywhere else -- inference, CUDA, autocast, a shape it does not cover -- it
    is the ordinary ``nn.Conv2d``."""

    def _conv_forward(self, x, weight, bias):
        if (x.device.type == 'cpu' and x.dim() == 4 and torch.is_grad_enabled()
                and (x.requires_grad or weight.requires_grad) and depthwise_applies(self)
                and not autocast_on('cpu')):
            return depthwise_conv2d(x, weight, bias, self.padding)
        return super()._conv_forward(x, weight, bias)


__all__ = ['DepthwiseConv2d', 'aten_depthwise_backward', 'depthwise_applies',
           'depthwise_conv2d', 'depthwise_weight_grad', 'is_stride1_depthwise']
