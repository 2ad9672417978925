"""The spiking detection heads' quantiser (time-axis helpers: ``mmsnn/models/time_axis.py``)."""
from ..neurons import build_neuron
from ..necks.spiking_fpn import HEAD_NEURON


def head_neuron(neuron_cfg=None):
    """The heads' quantiser: the reference's integer counts 0..4 (``norm=1``), identical in
    train and eval. A stateful neuron (``ILIF``/``LIF``) needs ``T`` inside ``neuron_cfg``."""
    return build_neuron(dict(neuron_cfg or HEAD_NEURON))
