"""What every mmsnn backbone shares with mmdet's backbones (``ResNet``, ``SwinTransformer``):
``frozen_stages``, ``norm_eval`` and an ``init_cfg`` Pretrained that goes through the one
converter (:mod:`mmsnn.models.reference_conversion`)."""
import torch.nn as nn
from mmengine.model import BaseModule


class SpikingBackbone(BaseModule):
    """Base of MetaSDT and the spiking transformers (Spikformer, SDT v1, QKFormer).

    Subclasses set ``self.frozen_stages`` and ``self.norm_eval`` and implement
    ``_stage_modules(i)``: the built modules of stage tap ``i`` (empty past the last built
    stage). ``frozen_stages = k`` freezes taps ``0..k`` (``-1``: none), as in mmdet.
    """

    def _freeze_stages(self):
        for i in range(self.frozen_stages + 1):
            for m in self._stage_modules(i):
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def init_weights(self):
        # init_cfg type 'Pretrained': the one converter (container/prefix handling, then the
        # family's key filter), every unfitting key named. Imported here: checkpoint.py
        # imports the backbone families to find their filters.
        from ..reference_conversion import init_backbone_weights
        if not init_backbone_weights(self):
            super().init_weights()
