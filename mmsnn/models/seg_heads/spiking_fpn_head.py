"""Spiking Semantic FPN decode head (mmseg).

mmseg's ``FPNHead`` (Kirillov et al., "Panoptic Feature Pyramid Networks") with another unit:
every pyramid level goes through a *scale head* of 3x3 conv units, each followed by a 2x
bilinear upsampling, until it reaches the finest level's stride; the levels are summed and a
1x1 classifier gives the logits. In the spiking version every conv sees spikes: a unit is
``quantiser -> conv3x3 -> BN`` (:class:`~mmsnn.models.head_units.SpikeConvBN`, the unit of the
spiking neck) and the classifier's input goes through the quantiser too. The quantiser is the
non-linearity, so there is no ReLU (``act_cfg`` is accepted for config compatibility and
ignored).

Strides. The number of units of level ``i`` is ``max(1, log2(stride_i / stride_0))``, and
each unit but the finest level's is followed by an upsampling, exactly as in ``FPNHead``.
The strides must be the real ones of the features: Meta-SDT's segmentation taps (0, 1, 2, 4)
have strides (2, 4, 8, 16), so the logits come out at 1/2 of the input. Two levels may share
a stride (the detection taps (1, 2, 3, 4) have (4, 8, 16, 16)); they then get the same scale
head length. Every level is finally resized to the finest level's exact size, so odd input
sizes work too.

Time. 5-D features ``[T, B, C, H, W]`` (backbone with ``keep_time=True``, through the
spiking neck) are folded into the batch for the convs, and the logits are averaged over T,
so the head always returns ``[B, num_classes, H, W]``.
"""
import math

import torch.nn as nn
from mmseg.models.decode_heads import FPNHead
from mmseg.models.utils import resize

from ...registry import register
from ..head_units import HEAD_NEURON, SpikeConvBN, head_neuron
from ..time_axis import fold_time, set_neuron_steps, mean_over_time


class _ScaleHead(nn.Sequential):
    """The units of one pyramid level, each but the finest level's followed by a 2x upsampling
    (``FPNHead`` interleaves ``Upsample`` modules; keeping only the units in the container
    keeps the keys ``scale_heads.i.k.{conv,bn}``)."""

    def __init__(self, units, num_upsamples, mode, align_corners):
        super().__init__(*units)
        self.num_upsamples = num_upsamples
        self.mode = mode
        self.align_corners = align_corners if mode in ('linear', 'bilinear', 'bicubic') else None

    def forward(self, x):
        for k, unit in enumerate(self):
            x = unit(x)
            if k < self.num_upsamples:
                x = resize(x, scale_factor=2, mode=self.mode, align_corners=self.align_corners,
                           warning=False)
        return x


@register('model', scopes=('mmseg',))
class SpikingFPNHead(FPNHead):
    """Spiking Semantic FPN head.

    Args:
        feature_strides (Sequence[int]): real strides of the input levels (in ``in_index``
            order), finest first, e.g. ``(2, 4, 8, 16)`` for Meta-SDT taps (0, 1, 2, 4).
            Every stride must be a power-of-two multiple of the first.
        neuron_cfg (dict | None): the quantiser in front of every conv and of the classifier
            (default: the reference's integer counts 0..4, ``norm=1``). A stateful neuron
            (``ILIF``/``LIF``) runs the T steps of the input it gets.
        upsample_mode (str): interpolation of the 2x upsamplings, 'bilinear' as ``FPNHead``.
        **kwargs: ``BaseDecodeHead`` arguments (``in_channels``, ``in_index``, ``channels``,
            ``num_classes``, ``dropout_ratio``, ``norm_cfg``, ``align_corners``,
            ``loss_decode``, ...). ``norm_cfg`` picks the norm after each conv (``BN`` if
            None; ``SyncBN`` is reverted to BN by mmengine when not distributed).
    """

    #: the inference fast path may hand this head's count convs' results over channels-last
    #: (:mod:`mmsnn.ops.count_conv`): every op after them takes any layout, and bilinear
    #: upsampling and the logits' resize run several times faster on channels-last maps
    count_conv_channels_last = True

    def __init__(self, feature_strides, neuron_cfg=None, upsample_mode='bilinear', **kwargs):
        feature_strides = [int(s) for s in feature_strides]
        in_channels = kwargs.get('in_channels')
        if isinstance(in_channels, (list, tuple)) and len(feature_strides) != len(in_channels):
            raise ValueError(f'SpikingFPNHead: {len(feature_strides)} feature_strides for '
                             f'{len(in_channels)} in_channels; give one stride per level')
        if min(feature_strides) != feature_strides[0]:
            raise ValueError(f'SpikingFPNHead: the first level must be the finest, got '
                             f'feature_strides={feature_strides}')
        # number of 2x upsamplings that bring level i to the finest stride
        num_upsamples = []
        for s in feature_strides:
            ratio = math.log2(s / feature_strides[0])
            if abs(ratio - round(ratio)) > 1e-6:
                raise ValueError(f'SpikingFPNHead: stride {s} is not a power-of-two multiple '
                                 f'of the finest stride {feature_strides[0]} '
                                 f'(feature_strides={feature_strides})')
            num_upsamples.append(int(round(ratio)))
        super().__init__(feature_strides, **kwargs)
        self.num_upsamples = num_upsamples
        self.neuron_cfg = dict(neuron_cfg or HEAD_NEURON)
        self.upsample_mode = upsample_mode

        # FPNHead's scale heads, with spiking units instead of its ConvModules
        self.scale_heads = nn.ModuleList(
            _ScaleHead([self._unit(in_ch if k == 0 else self.channels, self.channels)
                        for k in range(max(1, n_up))], n_up, upsample_mode, self.align_corners)
            for in_ch, n_up in zip(self.in_channels, num_upsamples))
        # the classifier (``conv_seg``, built by BaseDecodeHead) also sees spikes
        self.cls_spike = head_neuron(self.neuron_cfg)

    def _unit(self, in_ch, out_ch):
        # BN, SyncBN, GN, ... as mmcv builds them (BN when norm_cfg is None)
        return SpikeConvBN(in_ch, out_ch, 3, 1, self.neuron_cfg, norm_cfg=self.norm_cfg)

    @property
    def output_stride(self):
        """Stride of the logits relative to the input image (the finest feature stride)."""
        return self.feature_strides[0]

    def forward(self, inputs):
        inputs, T = fold_time(inputs)  # [T*B, ...]; FPNHead sums the levels (resized to the
        # finest level's exact size, so odd input sizes work) and classifies
        set_neuron_steps(self, T)
        return mean_over_time(super().forward(inputs), T)  # mean of the logits over time

    def cls_seg(self, feat):
        """Quantise, dropout, 1x1 classifier."""
        feat = self.cls_spike(feat)
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)
