"""Spiking Semantic FPN decode head (mmseg).

Same topology as mmseg's ``FPNHead`` (Kirillov et al., "Panoptic Feature Pyramid Networks"):
every pyramid level goes through a *scale head* of 3x3 conv units, each followed by a 2x
bilinear upsampling, until it reaches the finest level's stride; the levels are summed and a
1x1 classifier gives the logits. In the spiking version every conv sees spikes: a unit is
``quantiser -> conv3x3 -> BN`` (:class:`~mmsnn.models.necks.SpikeConvBN`, the unit of the
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
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize

from ...registry import register
from ..necks.spiking_fpn import HEAD_NEURON, SpikeConvBN
from ..time_axis import fold_time, mean_over_time
from ..neurons import build_neuron


@register('model', scopes=('mmseg',))
class SpikingFPNHead(BaseDecodeHead):
    """Spiking Semantic FPN head.

    Args:
        feature_strides (Sequence[int]): real strides of the input levels (in ``in_index``
            order), finest first, e.g. ``(2, 4, 8, 16)`` for Meta-SDT taps (0, 1, 2, 4).
            Every stride must be a power-of-two multiple of the first.
        neuron_cfg (dict | None): the quantiser in front of every conv and of the classifier
            (default: the reference's integer counts 0..4, ``norm=1``). A stateful neuron
            (``ILIF``/``LIF``) needs its ``T`` in this dict.
        upsample_mode (str): interpolation of the 2x upsamplings, 'bilinear' as ``FPNHead``.
        **kwargs: ``BaseDecodeHead`` arguments (``in_channels``, ``in_index``, ``channels``,
            ``num_classes``, ``dropout_ratio``, ``norm_cfg``, ``align_corners``,
            ``loss_decode``, ...). ``norm_cfg`` picks the norm after each conv (``BN`` if
            None; ``SyncBN`` is reverted to BN by mmengine when not distributed).
    """

    def __init__(self, feature_strides, neuron_cfg=None, upsample_mode='bilinear', **kwargs):
        super().__init__(input_transform='multiple_select', **kwargs)
        feature_strides = [int(s) for s in feature_strides]
        if len(feature_strides) != len(self.in_channels):
            raise ValueError(f'SpikingFPNHead: {len(feature_strides)} feature_strides for '
                             f'{len(self.in_channels)} in_channels; give one stride per level')
        if min(feature_strides) != feature_strides[0]:
            raise ValueError(f'SpikingFPNHead: the first level must be the finest, got '
                             f'feature_strides={feature_strides}')
        self.feature_strides = feature_strides
        self.neuron_cfg = dict(neuron_cfg or HEAD_NEURON)
        self.upsample_mode = upsample_mode

        # number of 2x upsamplings that bring level i to the finest stride
        self.num_upsamples = []
        for s in feature_strides:
            ratio = math.log2(s / feature_strides[0])
            if abs(ratio - round(ratio)) > 1e-6:
                raise ValueError(f'SpikingFPNHead: stride {s} is not a power-of-two multiple '
                                 f'of the finest stride {feature_strides[0]} '
                                 f'(feature_strides={feature_strides})')
            self.num_upsamples.append(int(round(ratio)))

        self.scale_heads = nn.ModuleList()
        for in_ch, n_up in zip(self.in_channels, self.num_upsamples):
            self.scale_heads.append(nn.ModuleList(
                self._unit(in_ch if k == 0 else self.channels, self.channels)
                for k in range(max(1, n_up))))
        # the classifier (``conv_seg``, built by BaseDecodeHead) also sees spikes
        self.cls_spike = build_neuron(self.neuron_cfg)

    def _unit(self, in_ch, out_ch):
        unit = SpikeConvBN(in_ch, out_ch, 3, 1, self.neuron_cfg, with_bn=True)
        if self.norm_cfg is not None:  # BN, SyncBN, GN, ... as mmcv builds them
            unit.bn = build_norm_layer(self.norm_cfg, out_ch)[1]
        return unit

    @property
    def output_stride(self):
        """Stride of the logits relative to the input image (the finest feature stride)."""
        return self.feature_strides[0]

    def _scale_head(self, i, x):
        n_up = self.num_upsamples[i]
        for k, unit in enumerate(self.scale_heads[i]):
            x = unit(x)
            if k < n_up:
                x = self._resize(x, scale_factor=2)
        return x

    def _resize(self, x, size=None, scale_factor=None):
        align = (self.align_corners
                 if self.upsample_mode in ('linear', 'bilinear', 'bicubic') else None)
        return resize(x, size=size, scale_factor=scale_factor, mode=self.upsample_mode,
                      align_corners=align, warning=False)

    def forward(self, inputs):
        x = self._transform_inputs(inputs)
        x, T = fold_time(x)
        out = self._scale_head(0, x[0])
        for i in range(1, len(self.feature_strides)):
            y = self._scale_head(i, x[i])
            if y.shape[2:] != out.shape[2:]:  # odd sizes: 2x upsampling overshoots by a pixel
                y = self._resize(y, size=out.shape[2:])
            out = out + y
        return mean_over_time(self.cls_seg(out), T)  # [T*B, K, h, w] -> mean over time

    def cls_seg(self, feat):
        """Quantise, dropout, 1x1 classifier."""
        feat = self.cls_spike(feat)
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)
