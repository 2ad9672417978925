"""Spiking FCN mask head."""
import torch.nn as nn
from mmdet.models.roi_heads.mask_heads import FCNMaskHead

from ...registry import register
from ..head_units import SpikeConvBN, head_neuron


@register('model', scopes=('mmdet',))
class SpikingFCNMaskHead(FCNMaskHead):
    """``FCNMaskHead`` where the input of every conv (and of the upsampling deconv) is
    quantised.

    ``num_convs`` x (quantiser -> conv -> BN) -> quantiser -> upsample (deconv 2x) ->
    quantiser -> ``conv_logits`` (1x1). The quantiser takes the place of the ReLUs. Time is
    handled by the RoI head, so this head is time-agnostic.

    Args:
        neuron_cfg (dict | None): quantiser; default integer counts 0..4 (``norm=1``).
        with_bn (bool): a norm layer after each hidden conv (default True); False gives
            biased convs without norm (the reference's released detectors).
        Other arguments: as :class:`mmdet.models.FCNMaskHead`; ``norm_cfg`` is the norm of the
        hidden units (default ``dict(type='BN')``), ``conv_cfg`` is not used by them.
    """

    def __init__(self, *args, neuron_cfg=None, with_bn=True, **kwargs):
        super().__init__(*args, **kwargs)
        pad_ok = self.conv_kernel_size % 2 == 1
        if not pad_ok:
            raise ValueError(f'SpikingFCNMaskHead needs an odd conv_kernel_size, got '
                             f'{self.conv_kernel_size}')
        self.convs = nn.ModuleList(
            SpikeConvBN(self.in_channels if i == 0 else self.conv_out_channels,
                        self.conv_out_channels, self.conv_kernel_size,
                        neuron_cfg=neuron_cfg, with_bn=with_bn, norm_cfg=self.norm_cfg)
            for i in range(self.num_convs))
        self.spike = head_neuron(neuron_cfg)

    def forward(self, x):
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(self.spike(x))
        return self.conv_logits(self.spike(x))
