"""Multi-step (I-LIF, T > 1) training at COCO scale needs lean autograd storage: the I-LIF's
training path keeps a bool window per step instead of the float32 membrane, and its spikes
are stored as uint8 counts -- with spikingjelly's numbers, forward and backward."""
import pytest
import torch
import torch.nn as nn

from mmsnn.models import MetaSDT
from mmsnn.models.neurons import IntegerLIF, _MultiStepNeuron, compact_spike_storage


@pytest.mark.parametrize('T,detach_reset', [(1, False), (4, False), (4, True)])
def test_lean_ilif_equals_spikingjelly(T, detach_reset):
    g = torch.Generator().manual_seed(T)
    neuron = IntegerLIF(T=T, detach_reset=detach_reset)
    x = (torch.randn(T * 2, 3, 6, 5, generator=g, dtype=torch.float64) * 3).requires_grad_()
    w = torch.randn(T * 2, 3, 6, 5, generator=g, dtype=torch.float64)
    out = neuron(x)
    (gx,) = torch.autograd.grad((out * w).sum(), x)
    # spikingjelly's own multi-step path (the parent class's forward)
    ref = _MultiStepNeuron.forward(neuron, x)
    (gref,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.equal(out, ref)
    assert 0 < ref.count_nonzero() < ref.numel() and gref.count_nonzero() > 0
    assert (gx - gref).abs().max() < 1e-12


def test_ilif_training_saves_only_bytes_for_its_spikes():
    """conv -> I-LIF -> conv: autograd keeps the I-LIF's window as bool and the spikes the
    second conv needs as uint8 counts, nothing in float32 at the neuron."""
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1)
    neuron = IntegerLIF(T=4)
    x = torch.randn(8, 3, 6, 6)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    h = conv1(x)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s = neuron(h)
    kept_by_neuron = list(saved)
    with compact_spike_storage():
        y = conv2(s)
    y.sum().backward()
    assert [t.dtype for t in kept_by_neuron] == [torch.bool]
    assert kept_by_neuron[0].shape == (4, 2, 4, 6, 6)
    assert conv1.weight.grad is not None and conv1.weight.grad.abs().sum() > 0


def test_ilif_backbone_train_step_same_gradients_as_spikingjelly(monkeypatch):
    torch.manual_seed(0)
    model = MetaSDT(embed_dims=(8, 16, 16, 16), num_heads=2, mixer='srb', T=4,
                    neuron_cfg=dict(type='ILIF'), out_indices=(1, 2, 3, 4)).double()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)

    def grads():
        model.zero_grad()
        sum(o.sum() for o in model(x)).backward()
        return [p.grad.clone() for p in model.parameters()]

    lean = grads()
    monkeypatch.setattr(IntegerLIF, 'forward', _MultiStepNeuron.forward)
    ref = grads()
    assert sum(g.abs().sum() for g in ref) > 0
    for a, b in zip(lean, ref):
        assert (a - b).abs().max() < 1e-9
