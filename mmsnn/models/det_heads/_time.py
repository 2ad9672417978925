"""Time-axis helpers shared by the spiking detection heads.

Features arrive either as ``[B, C, H, W]`` (one step, or a backbone that already averaged
over time) or as ``[T, B, C, H, W]`` (``MetaSDT(keep_time=True)`` -> ``SpikingFPN``). The heads
fold time into the batch (time-major, ``[T*B, ...]``) so that every conv / linear layer sees
each step, and merge the steps at the very end by averaging the logits over T.
"""
from ..neurons import build_neuron
from ..necks.spiking_fpn import HEAD_NEURON


def fold(x):
    """``[T, B, ...]`` -> (``[T*B, ...]``, T); a 4-D (or lower) tensor -> (x, None)."""
    if x.dim() == 5:
        return x.flatten(0, 1), x.shape[0]
    return x, None


def mean_over_time(x, T):
    """Average a time-major folded tensor ``[T*N, ...]`` over its T steps -> ``[N, ...]``."""
    if T is None or x is None:
        return x
    return x.reshape(T, x.shape[0] // T, *x.shape[1:]).mean(0)


def head_neuron(neuron_cfg=None):
    """The heads' quantiser: the reference's integer counts 0..4 (``norm=1``), identical in
    train and eval. A stateful neuron (``ILIF``/``LIF``) needs ``T`` inside ``neuron_cfg``."""
    return build_neuron(dict(neuron_cfg or HEAD_NEURON))
