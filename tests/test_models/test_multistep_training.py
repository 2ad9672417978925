"""Multi-step (I-LIF, T > 1) training at COCO scale needs lean autograd storage: the I-LIF's
training path keeps a bool window per step instead of the float32 membrane, and its spikes
are stored as uint8 counts -- with spikingjelly's numbers, forward and backward. And it must
not cost more than T times the one-step work: the I-LIF's passes run in place, and the RoI
heads extract all steps in one call -- with the numbers of the straightforward per-step code."""
import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import surrogate as sj_surrogate

from mmsnn.models import MetaSDT
from mmsnn.models.neurons import IntegerLIF, _MultiStepNeuron, compact_spike_storage


@pytest.mark.parametrize('T,detach_reset,threshold,window,norm', [
    (1, False, 1.0, None, 4.0), (4, False, 1.0, None, 4.0), (4, True, 1.0, None, 4.0),
    (4, False, 1.0, None, 1.0), (3, False, 0.7, None, 3.0), (3, True, 0.7, None, 4.0),
    (3, False, 1.0, (-0.5, 3.0), 4.0)])
def test_lean_ilif_equals_spikingjelly(T, detach_reset, threshold, window, norm):
    """The training path against spikingjelly's own multi-step node (its forward, its
    autograd) followed by ``/ norm``, in float64: the default unit threshold and clamp-range
    window (the fast path), and another threshold / window (the general one)."""
    g = torch.Generator().manual_seed(T)
    neuron = IntegerLIF(T=T, detach_reset=detach_reset, v_threshold=threshold, norm=norm)
    if window is not None:
        neuron.node.surrogate_function = sj_surrogate.MultiLevelSpikeCount(4, grad_window=window)
    x = torch.randn(T * 2, 3, 6, 5, generator=g, dtype=torch.float64) * 3
    x[:2, 0, 0, :4] = torch.tensor([0.0, -0.0, 4.0, 4.5])  # the window's edges at step 0
    x.requires_grad_()
    w = torch.randn(T * 2, 3, 6, 5, generator=g, dtype=torch.float64)
    out = neuron(x)
    (gx,) = torch.autograd.grad((out * w).sum(), x)
    # spikingjelly's own multi-step path (the parent class's forward)
    ref = _MultiStepNeuron.forward(neuron, x)
    (gref,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.equal(out, ref)
    assert 0 < ref.count_nonzero() < ref.numel() and gref.count_nonzero() > 0
    assert (gx - gref).abs().max() < 1e-12
    # inference (no grad, and grad mode with an input that needs none): the lean steps
    # without the window, against spikingjelly's node, in float64 and float32
    for x_ in (x.detach(), x.detach().float()):
        ref_ = _MultiStepNeuron.forward(neuron, x_)
        with torch.no_grad():
            assert torch.equal(neuron(x_), ref_)
        assert torch.equal(neuron(x_), ref_)


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


def _extractor(out_size, strides=(4, 8)):
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    return SingleRoIExtractor(dict(type='RoIAlign', output_size=out_size, sampling_ratio=2),
                              out_channels=3, featmap_strides=list(strides),
                              finest_scale=8)


def test_roi_extraction_over_all_steps_equals_per_step():
    """``SpikingRoIHead._extract`` takes the T steps in one call; it must give what T calls
    on each step's features give (time-major ``[T*R, ...]``), forward and gradients, float64,
    with two images and RoIs on two pyramid levels."""
    from mmsnn.models.det_heads.roi_head import SpikingRoIHead
    T, B = 3, 2
    g = torch.Generator().manual_seed(0)
    time_major = [torch.randn(T, B, 3, 16, 20, generator=g, dtype=torch.float64),
                  torch.randn(T, B, 3, 8, 10, generator=g, dtype=torch.float64)]
    rois = torch.tensor([[0, 2., 2., 20., 14.], [1, 10., 8., 60., 60.], [1, 0., 0., 9., 30.],
                         [0, 30., 4., 79., 63.]], dtype=torch.float64)
    extractor = _extractor(5)
    w = torch.randn(T * len(rois), 3, 5, 5, generator=g, dtype=torch.float64)

    def run(per_step):
        feats = [f.clone().requires_grad_() for f in time_major]
        batch_major = tuple(f.transpose(0, 1) for f in feats)  # as SpikingRoIHead gets them
        if per_step:  # the straightforward formulation: one call per step
            out = torch.cat([extractor(tuple(f[:, t] for f in batch_major), rois)
                             for t in range(T)])
        else:
            out, steps = SpikingRoIHead._extract(extractor, batch_major, rois)
            assert steps == T
        grads = torch.autograd.grad((out * w).sum(), feats)
        return out, grads

    out, grads = run(per_step=False)
    ref, ref_grads = run(per_step=True)
    levels = extractor.map_roi_levels(rois, 2)
    assert set(levels.tolist()) == {0, 1} and ref.abs().sum(dim=(1, 2, 3)).min() > 0
    assert out.shape == ref.shape == (T * len(rois), 3, 5, 5)
    assert torch.equal(out, ref)
    for a, b in zip(grads, ref_grads):
        assert b.abs().sum() > 0 and torch.equal(a, b)
