"""Segmentation decode heads (mmseg scope)."""
from .spiking_fpn_head import SpikingFPNHead

__all__ = ['SpikingFPNHead']
