"""Spiking RPN head: mmdet's ``RPNHead`` whose convs all see quantised inputs."""
import torch.nn as nn
from mmdet.models.dense_heads import RPNHead

from ...registry import register
from ..activation_checkpoint import checkpoint, wants_checkpoint
from ..head_units import SpikeConvBN, head_neuron
from ..neurons import conv_of_spikes
from ..time_axis import fold, set_neuron_steps, mean_over_time


@register('model', scopes=('mmdet',))
class SpikingRPNHead(RPNHead):
    """``RPNHead`` with spike-driven convs.

    ``rpn_conv`` becomes ``num_convs`` units of ``quantiser -> conv 3x3 -> BN`` (the unit of
    :class:`SpikingFPN`), and the 1x1 ``rpn_cls`` / ``rpn_reg`` predictors read the quantised
    output of the last unit (the quantiser replaces the ReLU). Features may be 4-D or
    time-major 5-D ``[T, B, C, H, W]``; in the latter case the convs run on ``[T*B, ...]`` and
    the classification and regression maps are averaged over T, so everything downstream
    (anchors, losses, proposals) sees ordinary ``[B, ...]`` maps.

    Args:
        neuron_cfg (dict | None): quantiser of every conv input; default the reference's
            integer 0..4 counts (``dict(type='MultiSpikeQuantizer', max_value=4, norm=1.0)``).
        with_bn (bool): a norm layer after each hidden conv (default True); False gives
            biased convs without norm (the reference's released detectors).
        norm_cfg (dict | None): that norm layer (default ``dict(type='BN')``).
        with_cp (bool): activation checkpointing of each level in training: the head keeps
            the level's features for the backward pass and recomputes its convs there (with
            T steps its activations are T times a one-step model's).
        Other arguments: as :class:`mmdet.models.RPNHead`.
    """

    def __init__(self, in_channels, num_classes=1, neuron_cfg=None, with_bn=True, norm_cfg=None,
                 with_cp=False, **kwargs):
        # _init_layers runs inside RPNHead.__init__, so set what it needs first
        self.with_cp = with_cp
        self.neuron_cfg = neuron_cfg
        self.with_bn = with_bn
        self.norm_cfg = norm_cfg
        super().__init__(in_channels, num_classes=num_classes, **kwargs)

    def _init_layers(self):
        super()._init_layers()  # rpn_cls / rpn_reg (and a stock rpn_conv we replace)
        self.rpn_conv = nn.Sequential(*[
            SpikeConvBN(self.in_channels if i == 0 else self.feat_channels, self.feat_channels,
                        3, neuron_cfg=self.neuron_cfg, with_bn=self.with_bn,
                        norm_cfg=self.norm_cfg)
            for i in range(self.num_convs)])
        self.spike = head_neuron(self.neuron_cfg)

    def forward_single(self, x):
        x, T = fold(x)
        set_neuron_steps(self, T)
        if wants_checkpoint(self.with_cp, [x]):
            return checkpoint(self, self._predict, x, T)
        return self._predict(x, T)

    def _predict(self, x, T):
        x = self.spike(self.rpn_conv(x))
        # both predictors keep the spikes as one uint8 tensor of counts (packed by the first,
        # reused by the second), not float: at P2 and T = 4 the float spikes were 262 MiB of
        # the checkpointed step's peak
        cls_score = mean_over_time(conv_of_spikes(self.rpn_cls, x), T)
        bbox_pred = mean_over_time(conv_of_spikes(self.rpn_reg, x), T)
        return cls_score, bbox_pred
