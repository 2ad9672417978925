"""The depthwise convolutions' weight gradient, oneDNN's against mmsnn's
(:func:`mmsnn.ops.depthwise_weight_grad`), at the shapes a Meta-SDT backbone trains on
(``tools/analysis/benchmark_depthwise_grad.py``).

Both run in one process, alternating, on the same tensors: a kernel against a kernel, so
nothing else of a process (allocator state, imports) differs between them.
"""
import torch

from .alternating import alternating_medians


def depthwise_shapes(arch, size, T=1):
    """``[(input shape, weight shape, padding, used)]`` of the stride-1 depthwise convs of
    ``MetaSDT(arch, mixer='srb')`` on a ``size`` (H, W) image, from one no-grad forward pass
    (``T`` steps fold into the batch); ``used``: whether the model computes its weight
    gradient with mmsnn's kernel (:class:`~mmsnn.ops.DepthwiseConv2d`)."""
    import torch.nn as nn

    from mmsnn.models import MetaSDT
    from mmsnn.ops import DepthwiseConv2d, is_stride1_depthwise
    model = MetaSDT(arch=arch, mixer='srb', out_indices=(1, 2, 3, 4), T=T,
                    neuron_cfg=dict(type='ILIF') if T > 1 else None).eval()
    shapes = []

    def record(module, inputs, output):
        shapes.append((tuple(inputs[0].shape), tuple(module.weight.shape), module.padding,
                       isinstance(module, DepthwiseConv2d)))

    handles = [m.register_forward_hook(record) for m in model.modules()
               if isinstance(m, nn.Conv2d) and is_stride1_depthwise(m)]
    with torch.no_grad():
        model(torch.zeros(1, 3, *size))
    for h in handles:
        h.remove()
    return shapes


def onednn_weight_grad(x, grad, weight, padding):
    """The weight gradient as autograd computes it for ``F.conv2d``."""
    from mmsnn.ops import aten_depthwise_backward
    return aten_depthwise_backward(grad, x, weight, padding, [False, True, False])[1]


def time_weight_grads(shape, weight_shape, padding, repeats=5, seed=0):
    """Median seconds of oneDNN's and mmsnn's weight gradient on spike-like input (counts
    k / 4, k in 0..4) and a normal output gradient, each run ``repeats`` times alternating
    after one warm-up, and the largest difference between the two relative to the largest
    entry. Returns dict(onednn_s, mmsnn_s, rel_diff)."""
    from mmsnn.ops import depthwise_weight_grad
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 5, shape, generator=g).float() / 4
    grad = torch.randn(shape, generator=g)  # stride 1, 'same' padding: the input's shape
    weight = torch.empty(weight_shape)
    routes = {'onednn_s': lambda: onednn_weight_grad(x, grad, weight, padding),
              'mmsnn_s': lambda: depthwise_weight_grad(x, grad, weight_shape[2:], padding)}
    outputs, result = alternating_medians(routes, repeats)
    a, b = outputs['onednn_s'], outputs['mmsnn_s']
    result['rel_diff'] = float((a - b).abs().max() / a.abs().max())
    return result


__all__ = ['depthwise_shapes', 'onednn_weight_grad', 'time_weight_grads']
