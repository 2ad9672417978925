"""Spiking FCN mask head."""
import torch.nn as nn
from mmdet.models.roi_heads.mask_heads import FCNMaskHead

from ...registry import register
from ..necks.spiking_fpn import SpikeConvBN
from ._time import head_neuron


@register('model', scopes=('mmdet',))
class SpikingFCNMaskHead(FCNMaskHead):
    """``FCNMaskHead`` where the input of every conv (and of the upsampling deconv) is
    quantised.

    ``num_convs`` x (quantiser -> conv -> BN) -> quantiser -> upsample (deconv 2x) ->
    quantiser -> ``conv_logits`` (1x1). The quantiser takes the place of the ReLUs. Time is
    handled by the RoI head, so this head is time-agnostic.

    Args:
        neuron_cfg (dict | None): quantiser; default integer counts 0..4 (``norm=1``).
        conv_bn (bool): BN after each hidden conv (default True).
        Other arguments: as :class:`mmdet.models.FCNMaskHead` (``conv_cfg`` / ``norm_cfg``
        are not used by the hidden convs; they are spiking conv + BN units).
    """

    def __init__(self, *args, neuron_cfg=None, conv_bn=True, **kwargs):
        super().__init__(*args, **kwargs)
        pad_ok = self.conv_kernel_size % 2 == 1
        if not pad_ok:
            raise ValueError(f'SpikingFCNMaskHead needs an odd conv_kernel_size, got '
                             f'{self.conv_kernel_size}')
        self.convs = nn.ModuleList(
            SpikeConvBN(self.in_channels if i == 0 else self.conv_out_channels,
                        self.conv_out_channels, self.conv_kernel_size,
                        neuron_cfg=neuron_cfg, with_bn=conv_bn)
            for i in range(self.num_convs))
        self.spike = head_neuron(neuron_cfg)

    def forward(self, x):
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(self.spike(x))
        return self.conv_logits(self.spike(x))
