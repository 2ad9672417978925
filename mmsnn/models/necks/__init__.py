from .spiking_fpn import SpikingFPN

__all__ = ['SpikingFPN']
