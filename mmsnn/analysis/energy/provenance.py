"""Spike provenance: which modules are spiking neurons (and their ``D``, ``norm``, ``T``),
which modules pass spikes on, and the time steps of a model."""
import torch
import torch.nn as nn


class SpikeSource:
    """What the report knows about a spiking neuron: its name, max count ``D``, ``norm``
    (output = count / norm) and the real time steps ``T`` it runs (None: unknown)."""

    __slots__ = ('name', 'D', 'norm', 'T')

    def __init__(self, name, D, norm, T):
        self.name, self.D, self.norm, self.T = name, int(D), float(norm), T


def spike_source(module, name=''):
    """A :class:`SpikeSource` when ``module`` is a spiking neuron, else None.

    mmsnn's neurons: the integer quantiser (``D = max_value``, ``T = 1``: its time steps
    are virtual), I-LIF / LIF (``T`` real steps). Any other spikingjelly node (e.g. the
    time-first transformers' LIF) counts as a binary neuron (``D = 1``, ``norm = 1``) unless
    it has ``max_value``/``max_spike_count``; in multi-step mode its ``T`` is the leading
    dimension of its output.
    The ReLU twin (:class:`~mmsnn.models.neurons.ReLUTwin`) is not a neuron.
    """
    from ...models.neurons import MultiSpikeQuantizer, _MultiStepNeuron
    if isinstance(module, MultiSpikeQuantizer):
        return SpikeSource(name, module.max_value, module.norm, 1)
    if isinstance(module, _MultiStepNeuron):
        return SpikeSource(name, getattr(module, 'max_value', 1), module.norm, module.T)
    from spikingjelly.activation_based.neuron import BaseNode
    if isinstance(module, BaseNode):
        D = getattr(module, 'max_value', getattr(module, 'max_spike_count', 1))
        return SpikeSource(name, D, 1.0, None)
    return None


def _keeps_spikes(module):
    """Modules whose output is spikes when their input is (zero padding, max-pooling,
    identity, dropout in eval, flatten)."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return not module.training
    return isinstance(module, (nn.Identity, nn.Flatten, nn.Unflatten, nn.ZeroPad2d,
                               nn.modules.pooling._MaxPoolNd))


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _default_T(model):
    """Real time steps of the model: the largest ``T`` of its stateful neurons (1 if none)."""
    steps = [int(getattr(m, 'T', 1) or 1) for m in model.modules()
             if getattr(m, 'stateful', False) and spike_source(m) is not None]
    return max(steps, default=1)
