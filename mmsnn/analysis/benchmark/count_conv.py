"""Per conv shape: float32 convolution against the int8 count convolution
(:mod:`mmsnn.ops.count_conv`), at the shapes of a Meta-SDT's convs fed by spikes
(``tools/analysis/benchmark_count_conv.py``)."""
import copy

import torch
import torch.nn as nn

from ...models import MetaSDT
from .alternating import alternating_medians
from ...ops.count_conv import (count_conv_applies, packed_conv, spike_fed_convs, sum_limbs,
                               to_count_conv)


def spike_fed_conv_shapes(arch, size, mixer='srb'):
    """``[(name, conv, input shape, norm)]`` for every conv of ``MetaSDT(arch, mixer)`` that a
    neuron feeds, in a no-grad forward of one ``size`` image (seeded init)."""
    torch.manual_seed(0)
    model = MetaSDT(arch=arch, mixer=mixer, out_indices=(1, 2, 3, 4)).eval()
    shapes = {}
    convs = dict(model.named_modules())

    def hook(name):
        def record(mod, args):
            shapes.setdefault(name, tuple(args[0].shape))  # returns None: args unchanged
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in convs.items()
               if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    found, _ = spike_fed_convs(model, torch.zeros(1, 3, *size))
    for h in handles:
        h.remove()
    return [(name, convs[name], shapes[name], norm) for name, norm in found.items()]


def time_count_conv(conv, shape, norm, repeats=5, seed=0):
    """Median seconds of ``conv`` in float32 and as a count conv (the packed op on uint8
    channels-last counts and the limbs' sum: the work left once a compiled graph has fused the
    conversion to counts into the neuron), on spike counts ``k / norm`` of ``shape``, each run
    ``repeats`` times alternating after one warm-up; and their largest difference relative to
    the largest output. Returns dict(float32_s, count_s, rel_diff)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, int(norm) + 1, shape, generator=g).to(torch.uint8)
    x = counts.float() / norm
    plain = copy.deepcopy(conv).float()
    counted = to_count_conv(copy.deepcopy(conv).float(), norm)
    c = counts.unsqueeze(2) if x.dim() == 3 else counts
    c = c.contiguous(memory_format=torch.channels_last)
    routes = {'float32_s': lambda: plain(x),
              'count_s': lambda: sum_limbs(packed_conv(c, counted.count_key))}
    with torch.no_grad():
        outputs, result = alternating_medians(routes, repeats)
        a = outputs['float32_s']
        b = counted(x)  # the module's own result (bias included)
    result['rel_diff'] = float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))
    result['applies'] = count_conv_applies(conv)
    return result


__all__ = ['spike_fed_conv_shapes', 'time_count_conv']
