"""Firing rates, synaptic operations and energy per image of a spiking network.

    >>> from mmsnn.analysis import energy_report
    >>> report = energy_report(backbone, torch.randn(4, 3, 128, 128))   # 4 images
    >>> print(report.table())
    >>> report.totals['energy_mj'], report.totals['energy_ann_mj']
    >>> report.save('work_dirs/energy')    # energy.txt, .json, .csv, energy_rates.png

One module per concept:

* :mod:`.convention` -- what is counted and how (the convention), the energy presets;
* :mod:`.provenance` -- which modules are spiking neurons and which pass spikes on;
* :mod:`.flops` -- the FLOP formulas of the synaptic ops;
* :mod:`.time_watch` -- the torch-function mode that follows the time axis through every op
  and sees bare ``@`` products;
* :mod:`.counter` -- :class:`EnergyCounter`, the forward hooks that count per image;
* :mod:`.report` -- :class:`EnergyReport`, its table, JSON, CSV and figure;
* :mod:`.measure` -- :func:`energy_report` on tensors, and the test loop shared by
  ``tools/analysis/energy.py`` and ``tools/test.py --energy``.

The mmengine hook is :class:`mmsnn.engine.hooks.EnergyHook` (registered:
``custom_hooks=[dict(type='EnergyHook')]``); ``mmsnn.analysis.energy.EnergyHook`` still
finds it (kept for one release).

Why not spikingjelly's ``op_counter`` (2.0.0): its ``ACCounter`` decides from a tensor's
values alone whether it is spikes (bool, or every element 0 or 1) and then charges one
accumulate per non-zero element. mmsnn's quantiser emits integer counts ``0..D`` scaled by
``1 / norm`` (a count n costs n accumulates per synapse): such a tensor is not binary, so
the counter treats it as no spikes at all, and it has no way to weigh a spike by its count.
This report also never trusts values alone ({0, 1} could be anything): a tensor is spikes
only when it comes from a neuron. So the count stays here.
"""
from .convention import ENERGY_PRESETS, EXCLUDED_OPS  # noqa: F401
from .counter import EnergyCounter  # noqa: F401
from .flops import synaptic_flops  # noqa: F401
from .measure import count_test_images, counted_test_step, energy_report  # noqa: F401
from .provenance import SpikeSource, spike_source  # noqa: F401
from .report import EnergyReport  # noqa: F401


def __getattr__(name):
    # deprecated location of the hook (it moved to mmsnn.engine.hooks, where it is
    # registered); imported on demand so that analysis does not depend on engine
    if name == 'EnergyHook':
        from ...engine.hooks.energy_hook import EnergyHook
        return EnergyHook
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['energy_report', 'EnergyCounter', 'EnergyReport', 'EnergyHook', 'ENERGY_PRESETS',
           'spike_source', 'synaptic_flops', 'count_test_images', 'counted_test_step']
