"""The integer multi-spike quantiser and the spikingjelly multi-step neurons."""
import pytest
import torch

from mmsnn.models.neurons import build_neuron, is_stateful


def test_quantiser_forward_values():
    q = build_neuron(None)
    u = torch.tensor([-1.0, 0.0, 0.5, 1.5, 2.5, 2.6, 4.0, 4.4, 9.0])
    # round half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; clamp to [0, 4]; divide by norm 4
    assert torch.equal(q(u), torch.tensor([0, 0, 0, 2, 2, 3, 4, 4, 4]) / 4.0)


def test_quantiser_straight_through_window_is_inclusive():
    q = build_neuron(dict(type='MultiSpike', max_value=4, norm=4.0))
    u = torch.tensor([-0.01, 0.0, 2.0, 4.0, 4.01], requires_grad=True)
    q(u).sum().backward()
    assert torch.equal(u.grad, torch.tensor([0, 0.25, 0.25, 0.25, 0]))


def test_quantiser_equals_spikingjelly_multilevel_spike_count():
    from spikingjelly.activation_based.surrogate import MultiLevelSpikeCount
    u = (torch.randn(4000, dtype=torch.float64) * 3).requires_grad_(True)
    u.data[:5] = torch.tensor([0.0, 4.0, 0.5, 2.5, -0.0], dtype=torch.float64)
    w = torch.randn(4000, dtype=torch.float64)
    ours = build_neuron(dict(type='MultiSpike', max_value=4, norm=4.0))(u)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), u)
    ref = MultiLevelSpikeCount(4)(u) / 4.0
    (g_ref,) = torch.autograd.grad((ref * w).sum(), u)
    assert torch.equal(ours, ref) and torch.equal(g_ours, g_ref)


def test_quantiser_counts_for_compact_storage():
    """Inside compact_spike_storage() the quantiser hands its uint8 counts to the conv that
    saves its spikes (no second packing); a spike tensor changed in place since is packed
    from its new values; outside the context no counts are made."""
    from mmsnn.models import neurons
    q = build_neuron(dict(type='MultiSpike', max_value=4, norm=4.0))
    u = (torch.randn(2, 3, 5, 5) * 3).requires_grad_(True)
    assert not hasattr(q(u), '_mmsnn_spike_counts')
    with neurons.compact_spike_storage():
        s = q(u)
        fresh = q(u)
    counts, norm, dtype = neurons._pack_spikes(s)
    assert counts is s._mmsnn_spike_counts[0] and counts.dtype == torch.uint8
    assert norm == 4.0 and dtype == torch.float32
    # the oracle: the spec's counts round(clamp(u, 0, 4)), not the quantiser's output
    assert torch.equal(counts, torch.round(torch.clamp(u.detach(), 0, 4)).to(torch.uint8))
    assert torch.equal(neurons._unpack_spikes((counts, norm, dtype)), s.detach())
    with torch.no_grad():
        fresh.mul_(0.5)  # a later in-place change: the cached counts are stale now
    stale, _, _ = neurons._pack_spikes(fresh)
    assert stale is not fresh._mmsnn_spike_counts[0]
    assert torch.equal(stale, torch.round(fresh.detach() * 4).to(torch.uint8))


def test_quantiser_same_in_train_and_eval():
    q = build_neuron(None)
    u = torch.randn(1000) * 3
    assert torch.equal(q.train()(u), q.eval()(u))


def test_quantiser_under_bf16_autocast():
    q = build_neuron(None)
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = q(lin(x) * 4)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_ilif_single_step_equals_quantiser():
    ilif = build_neuron(dict(type='ILIF'), T=1)
    q = build_neuron(None)
    u = torch.randn(2, 3, 5, 5) * 3
    assert torch.equal(ilif(u), q(u))


@pytest.mark.parametrize('kind', ['ILIF', 'LIF'])
def test_multistep_neuron_has_memory_and_resets(kind):
    n = build_neuron(dict(type=kind), T=4)
    u = torch.full((4 * 2, 3), 1.5)  # [T*B, C]: constant drive
    a = n(u).reshape(4, 2, 3)
    assert any(not torch.equal(a[0], a[t]) for t in range(1, 4))  # membrane carries over
    assert torch.equal(n(u).reshape(4, 2, 3), a)  # and starts from rest each forward
    with pytest.raises(ValueError, match='multiple of T=4'):
        n(torch.zeros(6, 3))


def test_stateful_flags_and_unknown_type():
    assert not is_stateful(None) and is_stateful(dict(type='LIF'))
    assert is_stateful(dict(type='ReLU', multistep=True)) and not is_stateful(dict(type='ReLU'))
    with pytest.raises(KeyError, match="known: .*'ILIF'"):
        build_neuron(dict(type='Izhikevich'))


def _ilif_recurrence(x, decay=0.25, max_value=4, norm=4.0):
    """I-LIF written out (Luo et al., ECCV 2024): H[t] = decay * V[t-1] + X[t],
    C[t] = round(clip(H[t], 0, D)), soft reset V[t] = H[t] - C[t]; output C[t] / norm."""
    v = torch.zeros_like(x[0])
    out = []
    for xt in x:
        h = decay * v + xt
        c = torch.round(torch.clamp(h, 0, max_value))
        v = h - c
        out.append(c / norm)
    return torch.stack(out)


def _lif_recurrence(x, tau=2.0, v_threshold=1.0):
    """LIF with decay_input and hard reset to 0: H[t] = V[t-1] + (X[t] - V[t-1]) / tau,
    S[t] = H[t] >= threshold, V[t] = H[t] * (1 - S[t])."""
    v = torch.zeros_like(x[0])
    out = []
    for xt in x:
        h = v + (xt - v) / tau
        s = (h >= v_threshold).to(x.dtype)
        v = h * (1 - s)
        out.append(s)
    return torch.stack(out)


def test_ilif_follows_the_written_out_recurrence_over_time():
    T, B = 5, 3
    torch.manual_seed(0)
    x = torch.rand(T, B, 64, dtype=torch.float64) * 3 - 0.5
    n = build_neuron(dict(type='ILIF'), T=T)
    out = n(x.flatten(0, 1)).reshape(T, B, 64)
    expect = _ilif_recurrence(x)
    assert torch.equal(out, expect)
    # the decay matters: with decay 0 (no memory) or 1 (no leak) the steps differ
    assert not torch.equal(out, _ilif_recurrence(x, decay=0.0))
    assert not torch.equal(out, _ilif_recurrence(x, decay=1.0))


def test_lif_follows_the_written_out_recurrence_over_time():
    T, B = 5, 3
    torch.manual_seed(0)
    x = torch.rand(T, B, 64, dtype=torch.float64) * 3
    n = build_neuron(dict(type='LIF', tau=2.0), T=T)
    out = n(x.flatten(0, 1)).reshape(T, B, 64)
    assert torch.equal(out, _lif_recurrence(x, tau=2.0))
    assert not torch.equal(out, _lif_recurrence(x, tau=1.0))


#: the neurons' old registry keys, as the docs list them: each must build the class named
OLD_NEURON_KEYS = {'MultiSpike': 'MultiSpikeQuantizer', 'ILIF': 'IntegerLIF', 'LIF': 'BinaryLIF',
                   'ReLU': 'ReLUTwin'}


def test_neuron_registry_key_is_the_class_name():
    """Grepping a config's ``type`` finds the class: every key of NEURONS is the name of the
    class it builds, or one of the documented old keys (which build the same class as before,
    so old configs and released checkpoints still work); configs/ use the class names."""
    import glob
    import os.path as osp
    import re

    from mmsnn.models.neurons import NEURONS
    for key, cls in NEURONS.module_dict.items():
        assert cls.__name__ in (key, OLD_NEURON_KEYS.get(key)), (key, cls)
    for old, name in OLD_NEURON_KEYS.items():
        assert NEURONS.module_dict[name].__name__ == name
        assert NEURONS.module_dict[old] is NEURONS.module_dict[name]
        assert type(build_neuron(dict(type=old))).__name__ == name
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    old_type = re.compile(r"type\s*=\s*['\"](%s)['\"]" % '|'.join(OLD_NEURON_KEYS))
    for path in glob.glob(osp.join(repo, 'configs', '**', '*.py'), recursive=True):
        with open(path) as f:
            assert not old_type.search(f.read()), path


def test_set_neuron_steps_and_its_old_name(monkeypatch):
    """``time_axis.set_neuron_steps`` (formerly ``follow_time``) sets the steps of the stateful
    neurons below a module; the old name still works and warns that it is deprecated."""
    import torch.nn as nn

    from mmsnn.models import time_axis
    from mmsnn.utils import deprecation
    monkeypatch.setattr(deprecation, '_warned', set())
    block = nn.Sequential(build_neuron(dict(type='IntegerLIF')), build_neuron(None))
    time_axis.set_neuron_steps(block, 4)
    assert block[0].T == 4 and block[1].T == 1  # the stateless quantiser keeps its T
    time_axis.set_neuron_steps(block, None)
    assert block[0].T == 1
    with pytest.warns(DeprecationWarning, match='set_neuron_steps'):
        time_axis.follow_time(block, 3)
    assert block[0].T == 3


def test_every_neuron_lives_in_neurons_and_kernels_in_ops():
    """The transformers' multi-step LIF sits with the other neurons (the backbones' module
    re-exports it), and the I-LIF kernel (its step loop and autograd function) is an op."""
    from mmsnn.models import neurons
    from mmsnn.models.backbones import spiking_transformer_base
    from mmsnn.ops import lean_ilif
    assert neurons.MultiStepLIF.__module__ == 'mmsnn.models.neurons'
    assert spiking_transformer_base.MultiStepLIF is neurons.MultiStepLIF
    assert lean_ilif.LeanILIF.__module__ == 'mmsnn.ops.lean_ilif'
    x = torch.randn(2 * 3, 4)
    n = build_neuron(dict(type='IntegerLIF'), T=2)
    with torch.no_grad():
        expected = neurons._MultiStepNeuron.forward(n, x)  # spikingjelly's own I-LIF loop
        assert torch.equal(n(x), expected)
        assert torch.equal(lean_ilif.ilif_steps(x.reshape(2, 3, 4), 0.25, 1.0, 4.0, 4.0)
                           .reshape(6, 4), expected)
