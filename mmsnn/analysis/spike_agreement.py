"""How many spikes float32 inference changes against the same model in float64: every
quantiser output of ``extract_feat`` (backbone + neck), compared element by element.

The float64 run is the reference because it is the arithmetic the fast path is proven exact
in: in float32 any change of rounding -- folding BN, another convolution algorithm -- can move
a spike whose input lies next to a quantiser level. Used by
``tools/analysis/spike_agreement.py``.
"""
import copy

import torch


def spikes_of(model, inputs):
    """Every quantiser output of ``model.extract_feat(inputs)``, in call order."""
    from ..models.neurons import MultiSpikeQuantizer
    spikes = []
    handles = [m.register_forward_hook(lambda m, i, o: spikes.append(o.detach().clone()))
               for m in model.modules() if isinstance(m, MultiSpikeQuantizer)]
    try:
        with torch.no_grad():
            model.extract_feat(inputs)
    finally:
        for h in handles:
            h.remove()
    return spikes


def spike_agreement(model, inputs, variants):
    """Spikes of each ``variants[name](copy of model)`` in float32 against ``model`` in
    float64. Returns ``(reference spikes, {name: (spikes that differ, index of the first
    differing tensor or None)})``; ``model`` itself is not changed."""
    reference = spikes_of(copy.deepcopy(model).double(), inputs.double())
    rows = {}
    for name, make in variants.items():
        got = spikes_of(make(copy.deepcopy(model)), inputs)
        differ = sum(int((g.double() != r).sum()) for g, r in zip(got, reference))
        first = next((i for i, (g, r) in enumerate(zip(got, reference))
                      if not torch.equal(g.double(), r)), None)
        rows[name] = (differ, first)
    return reference, rows
