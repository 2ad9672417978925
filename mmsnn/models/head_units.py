"""What the spiking neck and heads are made of: their neuron and their conv unit.

* ``HEAD_NEURON`` / :func:`head_neuron`: the quantiser in front of every neck / head conv and
  linear layer. By default the reference's integer counts 0..4, *not* divided by 4
  (``norm=1``), the same in train and eval.
* :class:`SpikeConvBN`: ``quantiser -> conv -> norm``, the unit of :class:`SpikingFPN`,
  :class:`SpikingRPNHead`, :class:`SpikingFCNMaskHead` and :class:`SpikingFPNHead`.

The backbone's neurons and their registry are in ``neurons.py``; this module only holds the
heads' choice among them.
"""
import torch.nn as nn
from mmcv.cnn import build_norm_layer

from .neurons import build_neuron, conv_of_spikes

#: the heads' default neuron: the reference's integer counts 0..4, not divided by 4
HEAD_NEURON = dict(type='MultiSpikeQuantizer', max_value=4, norm=1.0)


def head_neuron(neuron_cfg=None):
    """The heads' quantiser (``neuron_cfg`` or :data:`HEAD_NEURON`). A stateful neuron
    (``ILIF``/``LIF``) needs no ``T``: the neck / head that folds its input sets it
    (:func:`~mmsnn.models.time_axis.set_neuron_steps`)."""
    return build_neuron(dict(neuron_cfg or HEAD_NEURON))


class SpikeConvBN(nn.Sequential):
    """``quantiser -> conv -> norm``: the unit every spiking neck / head conv is made of.

    Args:
        in_ch, out_ch, kernel_size, stride: of the conv (padding ``kernel_size // 2``).
        neuron_cfg (dict | None): the quantiser (default :data:`HEAD_NEURON`).
        with_bn (bool): a norm layer after the conv (default True). Without it the conv has
            a bias, the reference detector's choice for its neck, RPN and mask head.
        conv_bias (bool | str): 'auto' (default): a bias only without norm, as mmcv's
            ``ConvModule``. True with a norm is the reference segmentor's neck (conv bias,
            then BN).
        norm_cfg (dict | None): the norm layer (default ``dict(type='BN')``); kept under the
            name ``bn`` whatever its type, so checkpoints keep their keys.
    """

    def __init__(self, in_ch, out_ch, kernel_size=3, stride=1, neuron_cfg=None, with_bn=True,
                 conv_bias='auto', norm_cfg=None):
        super().__init__()
        if conv_bias == 'auto':
            conv_bias = not with_bn
        elif not isinstance(conv_bias, bool):
            raise ValueError(f"conv_bias must be 'auto', True or False, got {conv_bias!r}")
        self.spike = head_neuron(neuron_cfg)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2,
                              bias=conv_bias)
        if with_bn:
            self.bn = build_norm_layer(norm_cfg or dict(type='BN'), out_ch)[1]

    def forward(self, x):
        # nn.Sequential's loop, with the conv keeping its input spikes as uint8 in training
        for module in self:
            x = conv_of_spikes(module, x) if module is self.conv else module(x)
        return x
