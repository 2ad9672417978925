"""Spiking FPN neck, shared by detection (Mask R-CNN) and segmentation (Semantic FPN).

Same topology as mmdet's / mmseg's ``FPN`` (1x1 laterals, nearest top-down sum, 3x3 output
convs, extra levels), but every conv sees spikes: each conv is ``quantiser -> conv -> BN``.
The reference's heads use integer counts 0..4 (``norm=1``, not divided by 4) and one quantiser
behaviour in train and eval (its FPN binarised in eval; we do not copy that mismatch).

Time: a 5-D input ``[T, B, C, H, W]`` (backbone with ``keep_time=True``) is folded into the
batch, processed, and returned 5-D, so the heads can average their logits over T.
"""
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ...registry import register
from ..neurons import build_neuron
from ..time_axis import fold_time, unfold_time

#: the heads' default neuron: the reference's integer counts 0..4, not divided by 4
HEAD_NEURON = dict(type='MultiSpike', max_value=4, norm=1.0)


class SpikeConvBN(nn.Sequential):
    """quantiser -> conv (no bias) -> BN; the unit every spiking neck/head conv is made of."""

    def __init__(self, in_ch, out_ch, kernel_size=3, stride=1, neuron_cfg=None, with_bn=True):
        super().__init__()
        self.spike = build_neuron(neuron_cfg or HEAD_NEURON)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2,
                              bias=not with_bn)
        if with_bn:
            self.bn = nn.BatchNorm2d(out_ch)


@register('model')
class SpikingFPN(BaseModule):
    """Spiking feature pyramid. Arguments as mmdet's ``FPN`` (``in_channels``,
    ``out_channels``, ``num_outs``, ``start_level``, ``end_level``, ``add_extra_convs``),
    plus ``neuron_cfg`` (default: integer quantiser 0..4, norm 1)."""

    def __init__(self, in_channels, out_channels, num_outs, start_level=0, end_level=-1,
                 add_extra_convs=False, neuron_cfg=None, with_bn=True,
                 init_cfg=dict(type='Kaiming', layer='Conv2d', distribution='uniform')):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.start_level = start_level
        self.end_level = len(self.in_channels) if end_level == -1 else end_level + 1
        if add_extra_convs is True:
            add_extra_convs = 'on_input'
        if add_extra_convs not in (False, 'on_input', 'on_lateral', 'on_output'):
            raise ValueError(f'add_extra_convs must be False/True/on_input/on_lateral/on_output, '
                             f'got {add_extra_convs!r}')
        self.add_extra_convs = add_extra_convs
        n_levels = self.end_level - self.start_level
        if num_outs < n_levels:
            raise ValueError(f'num_outs={num_outs} is smaller than the {n_levels} input levels')

        def unit(i, o, k, s=1):
            return SpikeConvBN(i, o, k, s, neuron_cfg, with_bn)

        self.lateral_convs = nn.ModuleList(
            unit(self.in_channels[i], out_channels, 1)
            for i in range(self.start_level, self.end_level))
        self.fpn_convs = nn.ModuleList(unit(out_channels, out_channels, 3)
                                       for _ in range(n_levels))
        self.extra_convs = nn.ModuleList()
        if add_extra_convs:
            for k in range(num_outs - n_levels):
                in_ch = (self.in_channels[self.end_level - 1]
                         if k == 0 and add_extra_convs == 'on_input' else out_channels)
                self.extra_convs.append(unit(in_ch, out_channels, 3, 2))

    def forward(self, inputs):
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'SpikingFPN got {len(inputs)} feature maps but in_channels has '
                             f'{len(self.in_channels)} entries; match the backbone out_indices')
        inputs, T = fold_time(inputs)
        laterals = [conv(inputs[i + self.start_level])
                    for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down (same size when strides repeat)
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode='nearest')
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        if self.num_outs > len(outs):
            if not self.add_extra_convs:
                while len(outs) < self.num_outs:
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                src = {'on_input': inputs[self.end_level - 1], 'on_lateral': laterals[-1],
                       'on_output': outs[-1]}[self.add_extra_convs]
                for conv in self.extra_convs:
                    src = conv(src)
                    outs.append(src)
        return unfold_time(outs, T)
