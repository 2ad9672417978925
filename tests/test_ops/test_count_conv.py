"""Convolutions of spike counts as exact int8 products (``mmsnn/ops/count_conv.py``): the weight
limbs represent the weight to 2^-23 of each row's largest entry, the count convolution stays
within an analytic bound of torch's float64 convolution (the oracle, not the code under test)
on any CPU oneDNN's int8 convolution runs on, and ``compile_for_inference`` installs it only
where it is asked for or pays."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsnn.engine.compile import compile_for_inference, install_count_convs_for_inference
from mmsnn.models import MetaSDT
from mmsnn.models.neurons import MultiSpikeQuantizer
from mmsnn.ops.count_conv import (CountConv1d, CountConv2d, CountLinear, count_conv_applies,
                                  count_conv_supported, depthwise_applies, spike_fed_convs,
                                  to_count_conv, weight_limbs)

needs_onednn_int8 = pytest.mark.skipif(not count_conv_supported(),
                                       reason="this torch build has no oneDNN int8 convolution")


def test_weight_limbs_represent_the_weight():
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3) * torch.logspace(-3, 1, 16).view(-1, 1, 1, 1)
    w[3] = 0  # an all-zero row keeps a usable scale
    limbs = weight_limbs(w)
    assert len(limbs) == 3
    for q, s in limbs:
        assert q.dtype == torch.int8 and int(q.abs().max()) <= 127 and s.dtype == torch.float32
    back = sum(q.double() * s.double().view(-1, 1, 1, 1) for q, s in limbs)
    row_max = w.double().abs().reshape(16, -1).amax(1).view(-1, 1, 1, 1)
    # each limb leaves at most half of its level, 1/254 of the one before: 2^-24 in all
    assert ((back - w.double()).abs() <= row_max * 2.0 ** -23).all()
    assert (back[3] == 0).all()


def _bound(x, w, bias, **conv_args):
    """Analytic bound of a count conv's error against the exact (float64) convolution: the
    weight as limbs (<= max|w| 2^-23 per product) plus float32 rounding of the limbs' scaled
    sums, the limbs' sum and the bias (a few units of 2^-24 of sum |x| |w| + |bias|)."""
    conv = F.conv1d if w.dim() == 3 else F.conv2d
    xa = x.double().abs()
    mag = conv(xa, w.double().abs(), None, **conv_args)
    if bias is not None:
        mag = mag + bias.double().abs().view(-1, *[1] * (w.dim() - 2))
    wmax = w.double().abs().max()
    ones = torch.ones_like(w, dtype=torch.float64)
    return conv(xa, ones, None, **conv_args) * wmax * 2.0 ** -23 + mag * 2.0 ** -21


CASES = [  # (conv, input shape, norm)
    (nn.Conv2d(16, 8, 3, padding=1), (2, 16, 12, 10), 4.0),
    (nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), (1, 16, 13, 9), 4.0),
    (nn.Conv2d(256, 64, 1), (1, 256, 6, 7), 4.0),
    (nn.Conv2d(8, 8, 5, padding=2, dilation=1), (1, 8, 9, 9), 1.0),  # binary spikes
    (nn.Conv1d(256, 96, 1), (2, 256, 11), 4.0),
    (nn.Linear(300, 40), (2, 5, 300), 1.0),  # counts 0..1 over norm 1, rows in two dims
]


@needs_onednn_int8
@pytest.mark.parametrize('conv, shape, norm', CASES)
def test_count_conv_within_the_analytic_bound_of_float64(conv, shape, norm):
    torch.manual_seed(1)
    counts = torch.randint(0, int(norm) + 1, shape) * (torch.rand(shape) < 0.4)
    x = counts.float() / norm
    linear = isinstance(conv, nn.Linear)
    ref_conv = (lambda x, w, b, **a: F.linear(x, w, b)) if linear else \
        F.conv1d if isinstance(conv, nn.Conv1d) else F.conv2d
    args = {} if linear else dict(stride=conv.stride, padding=conv.padding,
                                  dilation=conv.dilation)
    bias = None if conv.bias is None else conv.bias.detach()
    exact = ref_conv(x.double(), conv.weight.detach().double(),
                     None if bias is None else bias.double(), **args)
    to_count_conv(conv, norm)
    assert isinstance(conv, CountLinear if linear else
                      CountConv1d if x.dim() == 3 else CountConv2d)
    with torch.no_grad():
        y = conv(x)
    assert y.shape == exact.shape and y.dtype == torch.float32 and y.is_contiguous()
    err = (y.double() - exact).abs()
    bound = _bound(x.flatten(0, -2)[..., None], conv.weight.detach()[..., None], bias,
                   **args).view(exact.shape) if linear else \
        _bound(x, conv.weight.detach(), bias, **args)
    assert (err <= bound).all(), float(err.max())
    # an int8 product with a single limb would be ~100x further off: the bound can fail
    assert float(err.max()) < 1e-5
    # with autograd, or in float64, it is the ordinary convolution
    xg = x.clone().requires_grad_()
    torch.testing.assert_close(conv(xg), ref_conv(xg, conv.weight, conv.bias, **args))
    with torch.no_grad():
        torch.testing.assert_close(conv.double()(x.double()), exact, rtol=1e-12, atol=1e-12)


def test_count_conv_applies_to_the_kinds_that_pay():
    assert count_conv_applies(nn.Conv2d(16, 64, 3, padding=1))
    assert count_conv_applies(nn.Conv2d(512, 128, 1))
    assert count_conv_applies(nn.Conv1d(768, 192, 1))
    assert not count_conv_applies(nn.Conv2d(128, 512, 1))  # widening 1x1: not faster
    assert not count_conv_applies(nn.Conv2d(64, 32, 1))  # few input channels
    assert not count_conv_applies(nn.Conv2d(32, 32, 7, padding=3, groups=32))  # depthwise
    assert depthwise_applies(nn.Conv2d(32, 32, 7, padding=3, groups=32))
    assert not depthwise_applies(nn.Conv2d(32, 64, 3))


class _Spiking(nn.Module):
    """An image conv, then neuron -> conv, and a conv fed by a BN (not by spikes)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.spike = MultiSpikeQuantizer()
        self.fed = nn.Conv2d(16, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.not_fed = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x):
        return self.not_fed(self.bn(self.fed(self.spike(self.stem(x)))))


def test_spike_fed_convs_finds_the_convs_a_neuron_feeds():
    model = _Spiking().train()
    found, out = spike_fed_convs(model, torch.randn(1, 3, 8, 8))
    assert found == {'fed': 4.0}
    assert out.shape == (1, 8, 8, 8)
    assert model.training and model.bn.training  # modes restored
    assert int(model.bn.num_batches_tracked) == 0  # the probe ran in eval mode


@needs_onednn_int8
def test_install_on_a_backbone_and_compile_for_inference_switches():
    torch.manual_seed(0)
    model = MetaSDT(embed_dims=(8, 16, 32, 128), out_indices=(1, 2, 3, 4), mixer='srb').eval()
    names = install_count_convs_for_inference(model, parts=[], force=True)
    convs = dict(model.named_modules())
    assert names and all(isinstance(convs[n], (CountConv1d, CountConv2d)) for n in names)
    first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert first not in names  # the stem reads the image, not spikes
    # float64 keeps its numbers: the count path is float32 only
    assert install_count_convs_for_inference(MetaSDT(embed_dims=(8, 16, 32, 128)).double(),
                                             parts=[], force=True) == []
    # compile_for_inference: off when asked, and never with a backend other than inductor
    # unless forced
    m2 = MetaSDT(embed_dims=(8, 16, 32, 128), mixer='srb').eval()
    compile_for_inference(m2, backend='aot_eager', count_convs=False)
    assert m2.count_convs == []
    m3 = MetaSDT(embed_dims=(8, 16, 32, 128), mixer='srb').eval()
    compile_for_inference(m3, backend='aot_eager')
    assert m3.count_convs == []


@needs_onednn_int8
@pytest.mark.slow  # one inductor compilation
def test_compiled_count_convs_agree_with_float64():
    """Compiled by inductor (the route ``tools/test.py --compile`` takes on an AMX CPU): the
    quantiser writes uint8 counts, ``mmsnn::count_conv`` computes the conv, and the result is
    within the analytic bound of float64 (here the spikes of the float32 and float64 models
    agree: the conv inputs are the same counts)."""
    torch.manual_seed(2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.spike = MultiSpikeQuantizer()
            self.conv = nn.Conv2d(16, 24, 3, padding=1)
            self.spike2 = MultiSpikeQuantizer()
            self.fc = nn.Conv1d(256, 64, 1)

        def forward(self, x, u):
            return self.conv(self.spike(x)), self.fc(self.spike2(u))

    net = Net().eval()
    x, u = torch.randn(1, 16, 10, 12) * 3, torch.randn(2, 256, 7) * 3
    exact = [F.conv2d(net.spike(x).double(), net.conv.weight.double(), net.conv.bias.double(),
                      padding=1),
             F.conv1d(net.spike2(u).double(), net.fc.weight.double(), net.fc.bias.double())]
    found, _ = spike_fed_convs(net, x, u)
    assert found == {'conv': 4.0, 'fc': 4.0}
    to_count_conv(net.conv, 4.0)
    to_count_conv(net.fc, 4.0)
    compiled = torch.compile(net, backend='inductor')
    with torch.no_grad():
        outs = compiled(x, u)
    for y, ref, conv, inp in zip(outs, exact, (net.conv, net.fc),
                                 (net.spike(x), net.spike2(u))):
        args = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
        assert y.shape == ref.shape
        assert ((y.double() - ref).abs() <= _bound(inp, conv.weight.detach(),
                                                   conv.bias.detach(), **args)).all()


def test_the_eager_rule_takes_only_wide_kernels_from_128_channels():
    assert count_conv_applies(nn.Conv2d(256, 256, 3, padding=1), compiled=False)
    assert not count_conv_applies(nn.Conv2d(64, 64, 3, padding=1), compiled=False)
    assert not count_conv_applies(nn.Conv2d(512, 128, 1), compiled=False)


def _fast_path_pair(model_type, seed, **kwargs):
    """A seeded ``model_type()`` through the fast path with count convs forced (direct convs,
    no Winograd), and an unconverted copy of it."""
    from mmsnn.deploy import convert_for_inference
    torch.manual_seed(seed)
    model = model_type().eval()
    plain = copy.deepcopy(model)
    return convert_for_inference(model, count_convs=True, winograd=False, **kwargs), plain


class _TinyBBoxHead(nn.Module):
    """RoI features [R, 8, 4, 4] -> quantiser -> fc 128 -> 16 (a narrowing Linear)."""
    in_channels, roi_feat_size = 8, 4

    def __init__(self):
        super().__init__()
        self.spike = MultiSpikeQuantizer()
        self.fc = nn.Linear(128, 16)

    def forward(self, x):
        return self.fc(self.spike(x.flatten(1)))


class _TinyDetector(nn.Module):
    """A backbone (left to the compiler), ``extract_feat``, an RPN-like head whose 3x3 conv
    (128 channels) and 1x1 predictor read spikes, and a bbox head with a narrowing fc."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 128, 3, padding=1), MultiSpikeQuantizer(),
                                      nn.Conv2d(128, 128, 3, padding=1))
        self.rpn_head = nn.Sequential(MultiSpikeQuantizer(), nn.Conv2d(128, 128, 3, padding=1),
                                      MultiSpikeQuantizer(), nn.Conv2d(128, 3, 1))

        self.roi_head = nn.Module()
        self.roi_head.bbox_head = _TinyBBoxHead()

    def extract_feat(self, x):
        return self.backbone(x)

    def forward(self, x):
        return self.rpn_head(self.extract_feat(x))


@needs_onednn_int8
def test_fast_path_installs_eager_count_convs_in_the_heads():
    model, plain = _fast_path_pair(_TinyDetector, 3, leave=('backbone',))
    x = torch.randn(1, 3, 16, 20)
    # the head's 3x3 conv; not its 1x1 predictor (eager rule), not the backbone (left)
    assert sorted(model.count_convs) == ['roi_head.bbox_head.fc', 'rpn_head.1']
    assert isinstance(model.rpn_head[1], CountConv2d)
    assert isinstance(model.roi_head.bbox_head.fc, CountLinear)
    rois = torch.randn(3, 8, 4, 4) * 3
    with torch.no_grad():
        torch.testing.assert_close(model.roi_head.bbox_head(rois), plain.roi_head.bbox_head(rois),
                                   rtol=1e-5, atol=1e-5)
    assert type(model.backbone[2]) is nn.Conv2d and type(model.rpn_head[3]) is nn.Conv2d
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-5)
    from mmsnn.deploy import convert_for_inference
    assert convert_for_inference(copy.deepcopy(plain), count_convs=False).count_convs == []


def test_count_convs_do_not_pay_where_onednn_may_not_use_amx(monkeypatch):
    from mmsnn.ops.count_conv import count_conv_pays
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: True, raising=False)
    monkeypatch.setattr('mmsnn.ops.count_conv.count_conv_supported', lambda: True)
    monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    assert count_conv_pays()
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')
    assert not count_conv_pays()
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX512_CORE_AMX')
    assert count_conv_pays()
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: False, raising=False)
    assert not count_conv_pays()


@needs_onednn_int8
def test_channels_last_results_equal_the_transposed_ones():
    torch.manual_seed(4)
    conv = to_count_conv(nn.Conv2d(16, 8, 3, padding=1), 4.0)
    x = torch.randint(0, 5, (2, 16, 6, 7)).float() / 4
    with torch.no_grad():
        nchw = conv(x)
        conv.channels_last_output = True
        nhwc = conv(x)
    assert nchw.is_contiguous() and nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(nchw, nhwc)


class _TinySegmentor(nn.Module):
    """``extract_feat`` giving two 128-channel levels, and mmsnn's spiking FPN seg head."""

    def __init__(self):
        super().__init__()
        from mmsnn.models.seg_heads.spiking_fpn_head import SpikingFPNHead
        self.backbone = nn.Conv2d(3, 128, 1)
        self.decode_head = SpikingFPNHead(feature_strides=(4, 8), in_channels=[128, 128],
                                          in_index=[0, 1], channels=128, num_classes=5,
                                          dropout_ratio=0.0, norm_cfg=dict(type='BN'))

    def extract_feat(self, x):
        f = self.backbone(x) * 4
        return [f, F.avg_pool2d(f, 2)]


@needs_onednn_int8
def test_seg_head_count_convs_hand_over_channels_last():
    model, plain = _fast_path_pair(_TinySegmentor, 5)
    x = torch.randn(1, 3, 24, 32)
    convs = [m for m in model.decode_head.modules() if isinstance(m, CountConv2d)]
    assert len(convs) == 2 and all(c.channels_last_output for c in convs)  # a unit per level
    with torch.no_grad():
        got = model.decode_head(model.extract_feat(x))
        want = plain.decode_head(plain.extract_feat(x))
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
