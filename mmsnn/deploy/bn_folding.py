"""BatchNorm folded into the conv before it, for inference (torch's formula, mmcv's walk).

The maths is torch's ``torch.nn.utils.fusion.fuse_conv_bn_weights`` (eval statistics:
``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``);
the walk over a model is mmcv's ``fuse_conv_bn``'s: a BN that follows a conv among the same
parent's children (in registration order) is folded into that conv and replaced by
``nn.Identity``. Unlike mmcv's walk, which takes only ``nn.Conv2d``, it also takes the
``Conv1d -> BatchNorm1d`` pairs of the transformer MLPs.
"""
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


def fold_bn_into_conv(conv, bn):
    """Fold the eval-mode BatchNorm ``bn`` into ``conv`` (an ``nn.ConvNd``, or an ``nn.Linear``
    whose output features are ``bn``'s channels), in place and in the conv's dtype; ``conv``
    gets a bias if it had none. Returns ``conv``."""
    if isinstance(conv, nn.modules.conv._ConvTransposeNd):
        raise TypeError('fold_bn_into_conv: a transposed conv keeps output channels in dim 1')
    # in place on the conv module (not a fused copy): anything holding the module keeps it
    conv.weight, conv.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    conv.bias.requires_grad_(conv.weight.requires_grad)  # a new bias follows the weight
    return conv


def fold_conv_bn(module):
    """Fold every BN of ``module`` that follows a conv (see the module docstring), in place.
    Returns ``module``."""
    last = None
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            if last is not None:
                fold_bn_into_conv(module._modules[last], child)
                module._modules[name] = nn.Identity()
                last = None
        elif isinstance(child, nn.modules.conv._ConvNd) and not child.transposed:
            last = name
        else:
            fold_conv_bn(child)
    return module


__all__ = ['fold_bn_into_conv', 'fold_conv_bn']
