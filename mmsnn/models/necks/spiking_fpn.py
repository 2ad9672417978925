"""Spiking FPN neck, shared by detection (Mask R-CNN) and segmentation (Semantic FPN).

mmdet's ``FPN`` with another conv unit: every lateral / output / extra conv is a
:class:`~mmsnn.models.head_units.SpikeConvBN` (``quantiser -> conv -> BN``), so every conv
sees spikes. The topology is mmdet's; the forward (:meth:`SpikingFPN.pyramid`) is mmdet's
``FPN.forward`` op for op, written out so that it can let go of tensors early (tested equal
to mmdet's, outputs and gradients, for every extra-level mode).
The quantiser is the reference's integer counts 0..4 (``norm=1``), the same in train and eval
(the reference's released detectors binarise in eval: ``configs/det/reference``).

Time: a 5-D input ``[T, B, C, H, W]`` (backbone with ``keep_time=True``) is folded into the
batch, processed, and returned 5-D, so the heads can average their logits over T. With T
steps the neck keeps T times the activations for the backward pass; ``with_cp`` recomputes
them instead (for multi-step training at full size, beside the backbone's ``with_cp``).
"""
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.necks import FPN

from ...registry import register
from ..activation_checkpoint import checkpoint, in_recompute, wants_checkpoint
from ..head_units import SpikeConvBN
from ..time_axis import fold_time, set_neuron_steps, unfold_time


@register('model')
class SpikingFPN(FPN):
    """Spiking feature pyramid.

    Args:
        in_channels, out_channels, num_outs, start_level, end_level, add_extra_convs,
        upsample_cfg: as mmdet's ``FPN`` (extra convs are appended to ``fpn_convs`` as there).
        neuron_cfg (dict | None): quantiser of every conv input (default: integer counts 0..4,
            ``norm=1``).
        with_bn (bool): a norm layer after every conv (default True); False gives biased
            convs without norm (the reference detector's neck).
        conv_bias (bool | str): 'auto' (bias only without norm) or True (bias, then norm: the
            reference segmentor's neck).
        norm_cfg (dict | None): the norm layer, default ``dict(type='BN')``.
        with_cp (bool): activation checkpointing of the whole neck in training: it keeps its
            inputs for the backward pass and recomputes the rest there (the same outputs,
            gradients and BN statistics; the recompute costs a second forward of the neck).
    """

    def __init__(self, in_channels, out_channels, num_outs, start_level=0, end_level=-1,
                 add_extra_convs=False, neuron_cfg=None, with_bn=True, conv_bias='auto',
                 norm_cfg=None, upsample_cfg=dict(mode='nearest'), with_cp=False,
                 init_cfg=dict(type='Kaiming', layer='Conv2d', distribution='uniform')):
        in_channels = list(in_channels)
        if add_extra_convs not in (False, True, 'on_input', 'on_lateral', 'on_output'):
            raise ValueError(f'add_extra_convs must be False/True/on_input/on_lateral/on_output, '
                             f'got {add_extra_convs!r}')
        end = len(in_channels) if end_level == -1 else end_level + 1
        if num_outs < end - start_level:
            raise ValueError(f'num_outs={num_outs} is smaller than the {end - start_level} '
                             'input levels')
        super().__init__(in_channels, out_channels, num_outs, start_level=start_level,
                         end_level=end_level, add_extra_convs=add_extra_convs,
                         upsample_cfg=upsample_cfg, init_cfg=init_cfg)

        self.with_cp = with_cp

        def unit(i, o, k, s=1):
            return SpikeConvBN(i, o, k, s, neuron_cfg, with_bn, conv_bias, norm_cfg)

        # the same convs as FPN built (ConvModules), as spiking units
        levels = range(self.start_level, self.backbone_end_level)
        self.lateral_convs = nn.ModuleList(unit(in_channels[i], out_channels, 1) for i in levels)
        extra = [conv.conv for conv in self.fpn_convs][len(levels):]
        self.fpn_convs = nn.ModuleList(
            [unit(out_channels, out_channels, 3) for _ in levels] +
            [unit(c.in_channels, out_channels, 3, 2) for c in extra])

    def forward(self, inputs):
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'SpikingFPN got {len(inputs)} feature maps but in_channels has '
                             f'{len(self.in_channels)} entries; match the backbone out_indices')
        inputs, T = fold_time(inputs)
        set_neuron_steps(self, T)
        if wants_checkpoint(self.with_cp, inputs):
            outs = checkpoint(self, self.pyramid, inputs)
        else:
            outs = self.pyramid(inputs)
        return unfold_time(outs, T)

    def pyramid(self, inputs):
        """mmdet's ``FPN.forward``, op for op (the same outputs and gradients), that lets go
        of each top-down sum once its output conv has read it and, in ``with_cp``'s
        recompute, of each output but the one the extra levels start from: nothing reads the
        recompute's outputs. At T = 4 and COCO size the end of that recompute held the P2
        sum and output (2 x 262 MiB) for nothing, at the checkpointed step's peak."""
        laterals = [conv(inputs[i + self.start_level])
                    for i, conv in enumerate(self.lateral_convs)]
        levels = len(laterals)
        for i in range(levels - 1, 0, -1):
            if 'scale_factor' in self.upsample_cfg:
                up = F.interpolate(laterals[i], **self.upsample_cfg)
            else:
                up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                   **self.upsample_cfg)
            laterals[i - 1] = laterals[i - 1] + up
            del up
        extra = self.num_outs > levels
        keep_outputs = not in_recompute(self)
        outs = []
        for i in range(levels):
            outs.append(self.fpn_convs[i](laterals[i]))
            if not (extra and self.add_extra_convs == 'on_lateral' and i == levels - 1):
                laterals[i] = None
            if not keep_outputs and i < levels - 1:
                outs[i] = None
        if not extra:
            return tuple(outs)
        if not self.add_extra_convs:  # max pool on the last output (Faster / Mask R-CNN)
            for _ in range(self.num_outs - levels):
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            return tuple(outs)
        if self.add_extra_convs == 'on_input':
            source = inputs[self.backbone_end_level - 1]
        elif self.add_extra_convs == 'on_lateral':
            source = laterals[-1]
        else:  # 'on_output'
            source = outs[-1]
        outs.append(self.fpn_convs[levels](source))
        for i in range(levels + 1, self.num_outs):
            last = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
            outs.append(self.fpn_convs[i](last))
        return tuple(outs)
