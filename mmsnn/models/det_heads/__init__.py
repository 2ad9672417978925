"""Spiking Mask R-CNN parts (registered in mmdet's registry).

Every conv / linear input goes through the integer quantiser (counts 0..4, ``norm=1``, same
behaviour in train and eval). Features with a time axis ``[T, B, C, H, W]`` are folded into
the batch for the layers and the logits are averaged over T.
"""
from .bbox_head import SpikingShared2FCBBoxHead
from .mask_head import SpikingFCNMaskHead
from .roi_head import SpikingRoIHead
from .rpn_head import SpikingRPNHead

__all__ = ['SpikingRPNHead', 'SpikingRoIHead', 'SpikingShared2FCBBoxHead',
           'SpikingFCNMaskHead']
