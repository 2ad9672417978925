"""FLOP formulas of the synaptic ops (multiply-accumulates, bias ignored)."""
import torch.nn as nn
from torch.utils.flop_counter import conv_flop_count


def _synaptic_type(module):
    """The report's type name of a synaptic module (None for anything else)."""
    from ...models.layers import MatMul
    if isinstance(module, MatMul):
        return 'matmul'
    for cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                nn.ConvTranspose2d, nn.ConvTranspose3d):
        if isinstance(module, cls):
            return cls.__name__
    return None


def synaptic_flops(module, inputs, output):
    """Multiply-accumulates of one call of a synaptic module on the whole input tensor
    (all rows, all time steps), bias ignored.

    Convolutions use torch's own formula (``torch.utils.flop_counter.conv_flop_count``, which
    counts a multiply-accumulate as 2 FLOPs, hence the halving; a transposed conv is counted
    over its input positions, as here). Products and Linear layers stay one line each:
    ``out.numel() * k`` covers any number of batch dimensions, which torch's ``mm_flop`` /
    ``bmm_flop`` (2-D / 3-D shapes only) do not.
    """
    kind = _synaptic_type(module)
    if kind == 'matmul':
        return output.numel() * inputs[0].shape[-1]
    if kind == 'Linear':
        return output.numel() * module.in_features
    x_shape, out_shape = list(inputs[0].shape), list(output.shape)
    if len(x_shape) < module.weight.dim():  # an unbatched input: a batch of one
        x_shape, out_shape = [1] + x_shape, [1] + out_shape
    return conv_flop_count(x_shape, list(module.weight.shape), out_shape,
                           transposed=kind.startswith('ConvTranspose')) // 2


def _data_movement_types():
    """Modules that move data and so are free, even when computed with matrix products."""
    from mmcv.ops import RoIAlign  # the fast path's SeparableRoIAlign is one too
    return (RoIAlign,)
