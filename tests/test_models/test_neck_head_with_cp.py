"""``with_cp`` of the spiking neck (``SpikingFPN``) and RPN head (``SpikingRPNHead``): with T
steps folded into the batch they hold T times a one-step model's activations, which the
backbone's ``with_cp`` alone left in a multi-step Mask R-CNN (its T = 4 train step at COCO
size peaked at 2.1x the T = 1 step's memory). Checkpointed, they give the plain numbers
(outputs, gradients, BN running statistics; float64) and hold far fewer bytes at the peak
(counted at the dispatcher: the same on every CPU)."""
import pytest
import torch
from mmengine.registry import init_default_scope

import mmsnn  # noqa: F401  (registers the mmsnn modules)
from mmsnn.analysis.benchmark.tensor_bytes import PeakTensorBytes
from mmsnn.models.det_heads import SpikingRPNHead
from mmsnn.models.necks import SpikingFPN

T, B = 4, 2
ILIF = dict(type='ILIF', norm=1.0)


def _neck(with_cp, neuron_cfg=None):
    torch.manual_seed(0)
    # num_outs 5 from 3 levels: one extra output conv and mmdet's max-pooled level
    return SpikingFPN([8, 16, 32], 16, num_outs=5, add_extra_convs='on_output',
                      neuron_cfg=neuron_cfg, with_cp=with_cp).double().train()


def _rpn(with_cp, neuron_cfg=None):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    return SpikingRPNHead(
        16, feat_channels=16, neuron_cfg=neuron_cfg, with_cp=with_cp,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64])).double().train()


def _feats(size=32, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(T, B, c, size // 2**i, size // 2**i, generator=g, dtype=dtype) * 3)
            .requires_grad_(True) for i, c in enumerate((8, 16, 32))]


def _weighted_sum(tensors):
    # a fixed non-uniform weighting: every element's gradient path counts
    return sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).reshape(t.shape)).sum()
               for t in tensors)


def _neck_and_rpn_step(neck, rpn, feats):
    outs = neck(feats)
    cls, reg = rpn(outs)
    _weighted_sum([*outs, *cls, *reg]).backward()
    return [o.detach() for o in [*outs, *cls, *reg]]


@pytest.mark.parametrize('neuron_cfg', [None, ILIF], ids=['quantiser', 'ILIF'])
def test_neck_and_rpn_with_cp_equal_plain_float64(neuron_cfg):
    plain = _neck(False, neuron_cfg), _rpn(False, neuron_cfg)
    cp = _neck(True, neuron_cfg), _rpn(True, neuron_cfg)
    assert cp[0].with_cp and cp[1].with_cp
    feats_plain, feats_cp = _feats(), _feats()
    outs_plain = _neck_and_rpn_step(*plain, feats_plain)
    outs_cp = _neck_and_rpn_step(*cp, feats_cp)
    for a, b in zip(outs_plain, outs_cp):
        assert torch.equal(a, b)
    for a, b in zip(feats_plain, feats_cp):
        assert a.grad.abs().sum() > 0 and torch.equal(a.grad, b.grad)
    for part_plain, part_cp in zip(plain, cp):
        params = list(zip(part_plain.parameters(), part_cp.parameters()))
        assert sum(int(p.grad.abs().sum() > 0) for p, _ in params) > len(params) // 2
        for p, q in params:
            assert torch.equal(p.grad, q.grad)
        # the recompute is not a second batch: BN statistics as after one plain step
        buffers = list(zip(part_plain.buffers(), part_cp.buffers()))
        assert buffers
        for a, b in buffers:
            assert torch.equal(a, b)


def test_input_gradients_through_with_cp_in_eval_mode():
    # the ST-ERF takes input gradients of an eval-mode model with torch.autograd.grad, which
    # torch's reentrant checkpoint would refuse
    grads = []
    for with_cp in (False, True):
        neck, rpn = _neck(with_cp, ILIF).eval(), _rpn(with_cp, ILIF).eval()
        feats = _feats()
        cls, reg = rpn(neck(feats))
        grads.append(torch.autograd.grad(_weighted_sum([*cls, *reg]), feats))
    assert all(g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_neck_and_rpn_with_cp_not_in_inference():
    neck, rpn = _neck(True), _rpn(True)
    with torch.no_grad():  # nothing to recompute for: the plain forward
        outs = neck([f.detach() for f in _feats()])
        rpn(outs)
    assert not any(o.requires_grad for o in outs)


def _held_and_peak_bytes(with_cp):
    """(bytes alive after the forward: what is kept for the backward, peak of the step)."""
    neck, rpn = _neck(with_cp, ILIF).float(), _rpn(with_cp, ILIF).float()
    feats = _feats(64, torch.float32)
    state = [*feats, *neck.parameters(), *neck.buffers(), *rpn.parameters(), *rpn.buffers()]
    with PeakTensorBytes(ignore=state) as counter:
        outs = neck(feats)
        cls, reg = rpn(outs)
        loss = _weighted_sum([*outs, *cls, *reg])
        del outs, cls, reg
        held = counter.now
        loss.backward()
    return held, counter.peak


def test_neck_and_rpn_with_cp_hold_fewer_bytes(monkeypatch):
    # I-LIF T = 4 train step of neck + RPN head at 64x64: the plain forward keeps every
    # level's spikes (uint8), windows and BN inputs for T steps; checkpointed, the neck keeps
    # its inputs and the head each level's features, and the backward recomputes one part at
    # a time (at this size the output gradients, also T steps, are a large part of the peak)
    held_plain, peak_plain = _held_and_peak_bytes(False)
    held_cp, peak_cp = _held_and_peak_bytes(True)
    assert held_cp <= 0.35 * held_plain, (held_cp, held_plain)  # measured 0.31
    assert peak_cp <= 0.8 * peak_plain, (peak_cp, peak_plain)  # 0.71
    # the recompute's convs keep their spikes as uint8 too: with float32 spikes there (as
    # before conv_of_spikes) the checkpointed peak was 1.2x this one (1.1x since the neck's
    # recompute lets go of its sums and outputs)
    from mmsnn.models import head_units
    from mmsnn.models.det_heads import rpn_head
    for module in (head_units, rpn_head):
        monkeypatch.setattr(module, 'conv_of_spikes', lambda conv, s: conv(s))
    assert peak_cp <= 0.94 * _held_and_peak_bytes(True)[1]  # measured 0.91


def _neck_step_peak(order_of_mmdet):
    """Peak of live tensor bytes of an I-LIF T = 4 train step of the checkpointed neck alone
    (64x64), with its own pyramid or with mmdet's ``FPN.forward`` in its place."""
    from mmdet.models.necks import FPN
    neck = _neck(True, ILIF).float()
    if order_of_mmdet:
        neck.pyramid = lambda inputs: FPN.forward(neck, inputs)
    feats = _feats(64, torch.float32)
    with PeakTensorBytes(ignore=[*feats, *neck.parameters(), *neck.buffers()]) as counter:
        outs = neck(feats)
        loss = _weighted_sum(outs)
        del outs
        loss.backward()
    return counter.peak


def test_neck_pyramid_lets_go_of_its_top_down_sums():
    # each top-down sum is read by one output conv: the neck's own pyramid drops it then,
    # mmdet's order keeps all to the end. (Dropping the recompute's outputs too does not move
    # this tiny step's peak, measured: it shows in the per-op RSS of the step at COCO size,
    # docs/en/benchmarks.md; its exactness is test_neck_pyramid_is_mmdets_fpn_forward's)
    assert _neck_step_peak(False) <= 0.92 * _neck_step_peak(True)  # measured 0.89


@pytest.mark.parametrize('with_cp', [False, True], ids=['plain', 'with_cp'])
@pytest.mark.parametrize('add_extra_convs', [False, 'on_input', 'on_lateral', 'on_output'])
@pytest.mark.parametrize('levels', [
    dict(), dict(start_level=1, end_level=2, upsample_cfg=dict(scale_factor=2, mode='nearest')),
    dict(end_level=2, upsample_cfg=dict(mode='bilinear', align_corners=False))],
    ids=['all-levels', 'levels-1-2-scale-factor', 'levels-0-2-bilinear'])
def test_neck_pyramid_is_mmdets_fpn_forward(levels, add_extra_convs, with_cp):
    """``SpikingFPN.pyramid`` lets go of tensors early; its outputs and every gradient are
    mmdet's ``FPN.forward`` on the same module (float64 ``torch.equal``), also where it drops
    the outputs in ``with_cp``'s recompute."""
    from mmdet.models.necks import FPN

    def step(own):
        torch.manual_seed(0)
        end = levels.get('end_level', -1)
        num_outs = 6 if end == -1 else end - levels.get('start_level', 0) + 1
        neck = SpikingFPN([8, 16, 32, 32], 16, num_outs=num_outs,
                          add_extra_convs=add_extra_convs, neuron_cfg=ILIF,
                          with_cp=with_cp and own, **levels).double().train()
        if not own:
            neck.pyramid = lambda inputs: FPN.forward(neck, inputs)
        g = torch.Generator().manual_seed(1)
        feats = [(torch.rand(T, 1, c, 32 // 2**i, 32 // 2**i, generator=g,
                             dtype=torch.float64) * 3).requires_grad_(True)
                 for i, c in enumerate((8, 16, 32, 32))]
        outs = neck(feats)
        _weighted_sum(outs).backward()
        return ([o.detach() for o in outs], [f.grad for f in feats],
                [p.grad for p in neck.parameters()], list(neck.buffers()))

    mine, mmdet = step(True), step(False)
    assert len(mine[0]) == len(mmdet[0]) >= 2
    assert sum(p is not None for p in mmdet[2]) > len(mmdet[2]) // 2
    for group_mine, group_mmdet in zip(mine, mmdet):
        for a, b in zip(group_mine, group_mmdet):
            assert (a is None and b is None) or torch.equal(a, b)


def test_with_cp_reaches_neck_and_rpn_head_from_a_config():
    """The command of configs/det/README.md's multi-step section builds them checkpointed."""
    import os.path as osp

    from mmdet.registry import MODELS
    from mmengine.config import Config
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, 'configs/det/sdt_srb_s_coco.py'))
    cfg.merge_from_dict({'model.backbone.T': 4, 'model.backbone.neuron_cfg.type': 'IntegerLIF',
                         'model.backbone.keep_time': True, 'model.backbone.with_cp': True,
                         'model.neck.with_cp': True, 'model.rpn_head.with_cp': True})
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert model.backbone.with_cp and model.neck.with_cp and model.rpn_head.with_cp
    assert not SpikingFPN([8], 8, num_outs=1).with_cp  # off unless asked for


@pytest.mark.parametrize('neuron_cfg', [None, dict(type='MultiSpikeQuantizer', max_value=4, norm=4.0),
                                        ILIF], ids=['counts', 'counts/4', 'ILIF'])
def test_unit_conv_keeps_its_spikes_as_uint8_with_autograds_gradients(neuron_cfg, monkeypatch):
    # every neck / head conv reads spikes: in training it keeps them as uint8 counts (also in
    # a checkpoint's recompute, where saved-tensor hooks cannot reach), and its gradients are
    # autograd's own for the plain conv (float64, torch.equal)
    from mmsnn.models import head_units
    from mmsnn.models.time_axis import set_neuron_steps

    def step(unit):
        set_neuron_steps(unit, T)
        x = _feats()[1].flatten(0, 1).detach().requires_grad_(True)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append((t.dtype, t.shape)) or t, lambda t: t):
            y = unit(x)
        _weighted_sum([y]).backward()
        return [y.detach(), x.grad, *[p.grad for p in unit.parameters()]], saved

    def unit():
        torch.manual_seed(0)
        return head_units.SpikeConvBN(16, 16, 3, neuron_cfg=neuron_cfg).double().train()

    compact, saved_compact = step(unit())
    monkeypatch.setattr(head_units, 'conv_of_spikes', lambda conv, s: conv(s))
    plain, saved_plain = step(unit())
    assert all(g.abs().sum() > 0 for g in plain[1:])
    for a, b in zip(compact, plain):
        assert torch.equal(a, b)
    spikes = (torch.float64, torch.Size([T * B, 16, 16, 16]))
    # plain: the conv's input and the BN's input in float; compact: the BN's input only
    assert saved_plain.count(spikes) == 2 and saved_compact.count(spikes) == 1
    assert saved_compact.count((torch.uint8, spikes[1])) == 1


def test_unit_conv_under_autocast_is_the_plain_conv(monkeypatch):
    # autocast casts the conv's inputs where autograd records the casts: there the unit takes
    # the plain conv (the compact function's backward would meet bfloat16 gradients and
    # float32 spikes); GPU users train with AMP (tools/analysis/gpu_check.py)
    from mmsnn.models import head_units

    def step():
        torch.manual_seed(0)
        unit = head_units.SpikeConvBN(8, 8, 3).train()
        x = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = unit(x)
        _weighted_sum([y.float()]).backward()
        return [y.detach(), x.grad, *[p.grad for p in unit.parameters()]]

    compact = step()
    monkeypatch.setattr(head_units, 'conv_of_spikes', lambda conv, s: conv(s))
    for a, b in zip(compact, step()):
        assert torch.equal(a, b)


def test_large_spike_convs_run_in_batch_slices(monkeypatch):
    """Above ``CONV_SLICE_BYTES`` of float spikes a unit's conv runs in slices of its batch,
    forward and backward (oneDNN's layout copies are then a slice's size: the peak RSS of the
    checkpointed T = 4 Mask R-CNN step was two such copies of P2). In float64 the output and
    the input gradient equal the plain conv's (``torch.equal``); the weight gradient is the
    sum of the slices' sums (rounding only)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from mmsnn.models import head_units, neurons
    from mmsnn.models.time_axis import set_neuron_steps

    class ConvBatches(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.batches = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.convolution.default,
                        torch.ops.aten.convolution_backward.default):
                self.batches.append((func.__name__.split('.')[0], args[0].shape[0]))
            return func(*args, **(kwargs or {}))

    def step():
        torch.manual_seed(0)
        unit = head_units.SpikeConvBN(16, 16, 3, neuron_cfg=ILIF, with_bn=False).double()
        set_neuron_steps(unit.train(), T)
        x = _feats()[1].flatten(0, 1).detach().requires_grad_(True)  # 8 samples
        with ConvBatches() as seen:
            y = unit(x)
            _weighted_sum([y]).backward()
        return [y.detach(), x.grad, unit.conv.weight.grad, unit.conv.bias.grad], seen.batches

    whole, seen_whole = step()
    per_sample = 16 * 16 * 16 * 8  # float64 spikes of one sample
    monkeypatch.setattr(neurons, 'CONV_SLICE_BYTES', 3 * per_sample)
    sliced, seen_sliced = step()
    assert seen_whole == [('convolution', 8), ('convolution_backward', 8)]
    assert seen_sliced == [('convolution', 3)] * 2 + [('convolution', 2)] + [
        ('convolution_backward', 3)] * 2 + [('convolution_backward', 2)]
    assert torch.equal(sliced[0], whole[0]) and torch.equal(sliced[1], whole[1])
    assert whole[1].abs().sum() > 0
    for a, b in zip(sliced[2:], whole[2:]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * b.abs().max())
