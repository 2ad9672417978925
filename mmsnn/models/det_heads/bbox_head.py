"""Spiking shared-2FC box head."""
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead

from ...registry import register
from ..head_units import head_neuron


@register('model', scopes=('mmdet',))
class SpikingShared2FCBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` where the input of every linear layer is quantised.

    RoI features -> flatten -> [quantiser -> fc] x 2 -> quantiser -> ``fc_cls`` / ``fc_reg``
    (the last quantiser is optional: the reference's released detectors feed the second fc's
    output to the predictors as it is).
    The quantiser takes the place of the ReLUs. Same parameters (and state-dict keys) as the
    stock head. Time is handled by the RoI head (it feeds ``[T*R, ...]`` and averages the
    outputs), so this head is time-agnostic.

    Args:
        neuron_cfg (dict | None): quantiser; default integer counts 0..4 (``norm=1``).
        spike_before_predictors (bool): quantise the input of ``fc_cls`` / ``fc_reg``
            (default True). False reproduces the reference's released detectors.
        Other arguments: as :class:`mmdet.models.Shared2FCBBoxHead`.
    """

    def __init__(self, *args, neuron_cfg=None, spike_before_predictors=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.spike = head_neuron(neuron_cfg)
        self.spike_before_predictors = spike_before_predictors

    def forward(self, x):
        if self.with_avg_pool:
            x = self.avg_pool(x)
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = fc(self.spike(x))
        if self.spike_before_predictors:
            x = self.spike(x)
        cls_score = self.fc_cls(x) if self.with_cls else None
        bbox_pred = self.fc_reg(x) if self.with_reg else None
        return cls_score, bbox_pred
