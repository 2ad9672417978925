from .spiking_fpn import HEAD_NEURON, SpikeConvBN, SpikingFPN, fold_time, unfold_time

__all__ = ['SpikingFPN', 'SpikeConvBN', 'HEAD_NEURON', 'fold_time', 'unfold_time']
