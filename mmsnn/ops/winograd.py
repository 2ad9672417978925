"""3x3 convolutions by Winograd's algorithm on the CPU, for the inference fast path.

After BN folding, a spiking detector's inference on this CPU is mostly 3x3 convolutions (the
FPN outputs and the RPN at stride 4 alone are a third of the fused Mask R-CNN at 800x1344).
oneDNN computes them directly, at close to the machine's peak. Winograd's minimal filtering
computes the same linear map from fewer multiplications: 2-3.5x faster here, e.g. a 256->256
3x3 conv on a 200x336 map in 0.16 s instead of 0.57 s (2 threads). torch ships the
algorithm in NNPACK (``torch._nnpack_spatial_convolution``); mmsnn uses it, nothing is
reimplemented.

What changes: the arithmetic is exact in real numbers, but its float32 rounding is coarser
than the direct convolution's (about 1e-5 instead of 1e-6 absolute on unit-scale outputs;
``tests/test_deploy/test_convert_for_inference.py`` bounds it against float64), so a spike whose input lies within that
distance of a quantiser level can move one level. ``convert_for_inference(model,
winograd=False)`` keeps the direct convolution.

:class:`WinogradConv2d` is an ``nn.Conv2d`` (same parameters, same state dict) that takes the
Winograd path only where NNPACK applies and gains: no autograd, a float32 CPU tensor, a 3x3
kernel, stride 1, no dilation, one group, zero padding, and NNPACK not switched off
(``torch.backends.nnpack.flags(enabled=False)``, honoured also when set after the
conversion). Everywhere else -- float64 (the
golden tests), CUDA (cuDNN chooses its own algorithm), training, ERF probes -- it is the
ordinary ``nn.Conv2d``. Under ``torch.compile`` the Winograd call is the custom op
``mmsnn::nnpack_conv2d`` (torch >= 2.4), which dynamo keeps in the graph as one opaque op:
``_nnpack_spatial_convolution`` itself has no fake-tensor kernel and cannot be traced.
"""
import torch
import torch.nn as nn


def winograd_available():
    """Whether this torch build has NNPACK on this CPU and it is not switched off
    (``torch.backends.nnpack.set_flags(False)``). The check also initialises NNPACK, which
    its convolution needs."""
    return torch.backends.nnpack.is_available() and torch._C._get_nnpack_enabled()


def winograd_applies(conv):
    """Whether ``conv``'s shape is one NNPACK's Winograd path computes."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == 'zeros' and isinstance(conv.padding, tuple))


class WinogradConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose no-grad float32 CPU forward runs NNPACK's Winograd convolution.

    Made from an existing conv by :func:`to_winograd` (the module keeps its parameters).
    """

    #: set when NNPACK refused an input of this module: it then stays with the direct path
    nnpack_failed = False

    def forward(self, x):
        nnpack_input = (x.device.type == 'cpu' and x.dtype == torch.float32 and x.dim() == 4
                        and not torch.is_grad_enabled())
        if torch.compiler.is_compiling():
            # traced as one opaque op (dynamo cannot trace NNPACK's call); the NNPACK switch
            # and its size limits are checked inside it, at run time
            if nnpack_input and _nnpack_conv2d is not None:
                return _nnpack_conv2d(x, self.weight, self.bias, list(self.padding))
            return super().forward(x)
        # the NNPACK switch is read per call: a user may turn it off after the conversion
        if nnpack_input and not self.nnpack_failed and torch._C._get_nnpack_enabled():
            try:
                return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias,
                                                         list(self.padding))
            except RuntimeError:  # NNPACK has size limits of its own; the result is the same
                self.nnpack_failed = True
        return super().forward(x)


def _nnpack_or_direct(x, weight, bias, padding):
    if torch._C._get_nnpack_enabled():
        try:
            return torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, padding)
        except RuntimeError:  # NNPACK's own size limits
            pass
    return torch.nn.functional.conv2d(x, weight, bias, padding=padding)


def _define_compiled_op():
    """``mmsnn::nnpack_conv2d``: the Winograd convolution as a custom op, so that a compiled
    graph keeps it (inductor calls it as an external kernel between its generated ones).
    None where this torch has no ``torch.library.custom_op`` (before 2.4): the compiled
    graph then computes those convs directly."""
    if not hasattr(torch.library, 'custom_op'):
        return None
    from typing import List, Optional

    @torch.library.custom_op('mmsnn::nnpack_conv2d', mutates_args=())
    def nnpack_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      padding: List[int]) -> torch.Tensor:
        return _nnpack_or_direct(x, weight, bias, padding)

    @nnpack_conv2d.register_fake
    def _(x, weight, bias, padding):
        # 3x3, stride 1: each side grows by twice its padding and shrinks by 2
        return x.new_empty(x.shape[0], weight.shape[0], x.shape[2] + 2 * padding[0] - 2,
                           x.shape[3] + 2 * padding[1] - 2)

    return nnpack_conv2d


_nnpack_conv2d = _define_compiled_op()


def to_winograd(model):
    """Turn every ``nn.Conv2d`` of ``model`` that NNPACK's Winograd path computes into a
    :class:`WinogradConv2d` (in place; nothing if NNPACK is missing). Returns their names."""
    if not winograd_available():
        return []
    names = []
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d and winograd_applies(m):
            m.__class__ = WinogradConv2d  # same parameters and state dict: only forward differs
            names.append(name)
    return names


__all__ = ['WinogradConv2d', 'to_winograd', 'winograd_applies', 'winograd_available']
