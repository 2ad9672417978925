"""Energy report (mmsnn.analysis.energy): FLOPs counted by hand, spike counts from inputs whose
quantised values are known, the spike-driven check, real time steps, the CLI and test.py.

Every expected number here is written out from the layer shapes (formulas in the test) or
from the constants fed to a quantiser; none is taken from the code under test.
"""
import csv
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn

from mmsnn.analysis.energy import energy_report
from mmsnn.models import MetaSDT
from mmsnn.models.layers import SpikeDrivenAttention
from mmsnn.models.neurons import IntegerLIF, MultiSpikeQuantizer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_DET = osp.join(REPO, 'configs', 'det', 'demo', 'sdt_srb_s_demo.py')
DEMO_SEG = osp.join(REPO, 'configs', 'seg', 'demo', 'sdt_srb_demo.py')
E_MAC, E_AC = 4.6e-9, 0.9e-9  # mJ per operation (4.6 pJ, 0.9 pJ)


def by_name(report):
    return {lay['name']: lay for lay in report.layers}


# ----------------------------------------------------------------- FLOPs by hand

def conv(k, cin, cout, h, w, groups=1):
    """k x k conv: k*k*(cin/groups)*cout*h_out*w_out."""
    return k * k * (cin // groups) * cout * h * w


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def hand_meta_sdt_srb(H, W, dims, r=4, heads=8):
    """FLOPs per layer of MetaSDT(mixer='srb'), written out from the architecture table."""
    C0, C1, C2, C3 = dims
    f = {}

    def sep(prefix, c, k, h, w):  # InvertedSepConv: pw 1x1 (x2), dw kxk, pw 1x1
        f[f'{prefix}.pwconv1.0'] = ('Conv2d', c * 2 * c * h * w)
        f[f'{prefix}.dwconv.0'] = ('Conv2d', k * k * 2 * c * h * w)  # depthwise
        f[f'{prefix}.pwconv2.0'] = ('Conv2d', 2 * c * c * h * w)

    def srb(prefix, c, h, w):
        sep(f'{prefix}.Conv', c, 7, h, w)
        f[f'{prefix}.fc1'] = ('Linear', c * r * c * h * w)  # h*w tokens of c -> r*c
        f[f'{prefix}.conv2'] = ('Conv2d', conv(3, r * c, c, h, w))

    def transformer(prefix, c, n):
        sep(f'{prefix}.conv', c, 3, n, 1)
        d, dv = c // heads, 4 * c // heads
        f[f'{prefix}.attn.q_conv.0'] = ('Conv2d', c * c * n)
        f[f'{prefix}.attn.k_conv.0'] = ('Conv2d', c * c * n)
        f[f'{prefix}.attn.v_conv.0'] = ('Conv2d', c * 4 * c * n)
        f[f'{prefix}.attn.kv'] = ('matmul', heads * d * n * dv)  # k^T v: [d, N] x [N, dv]
        f[f'{prefix}.attn.qkv'] = ('matmul', heads * n * d * dv)  # q (k^T v): [N, d] x [d, dv]
        f[f'{prefix}.attn.proj_conv.0'] = ('Conv2d', 4 * c * c * n)
        f[f'{prefix}.mlp.fc1_conv'] = ('Conv1d', c * r * c * n)
        f[f'{prefix}.mlp.fc2_conv'] = ('Conv1d', r * c * c * n)

    h1, w1 = out_size(H, 7, 2, 3), out_size(W, 7, 2, 3)
    f['downsample1_1.encode_conv'] = ('Conv2d', conv(7, 3, C0 // 2, h1, w1))
    srb('ConvBlock1_1.0', C0 // 2, h1, w1)
    h2, w2 = out_size(h1, 3, 2, 1), out_size(w1, 3, 2, 1)
    f['downsample1_2.encode_conv'] = ('Conv2d', conv(3, C0 // 2, C0, h2, w2))
    srb('ConvBlock1_2.0', C0, h2, w2)
    h3, w3 = out_size(h2, 3, 2, 1), out_size(w2, 3, 2, 1)
    f['downsample2.encode_conv'] = ('Conv2d', conv(3, C0, C1, h3, w3))
    srb('ConvBlock2_1.0', C1, h3, w3)
    srb('ConvBlock2_2.0', C1, h3, w3)
    h4, w4 = out_size(h3, 3, 2, 1), out_size(w3, 3, 2, 1)
    f['downsample3.encode_conv'] = ('Conv2d', conv(3, C1, C2, h4, w4))
    for i in range(6):
        transformer(f'block3.{i}', C2, h4 * w4)
    f['downsample4.encode_conv'] = ('Conv2d', conv(3, C2, C3, h4, w4))  # stride 1
    for i in range(2):
        transformer(f'block4.{i}', C3, h4 * w4)
    return f


def test_meta_sdt_flops_match_hand_count_for_every_layer():
    dims, H, W = (16, 16, 32, 32), 64, 48
    torch.manual_seed(0)
    model = MetaSDT(embed_dims=dims, mixer='srb')
    report = energy_report(model, torch.randn(2, 3, H, W))
    expected = hand_meta_sdt_srb(H, W, dims)
    got = by_name(report)
    assert sorted(got) == sorted(expected)
    for name, (kind, flops) in expected.items():
        assert got[name]['type'] == kind, name
        assert got[name]['flops'] == flops, name
    assert report.totals['flops'] == sum(f for _, f in expected.values())
    # the stem reads the image: dense MACs, not a violation; everything else takes spikes
    stem = got['downsample1_1.encode_conv']
    assert not stem['spike_driven'] and stem['input_from'] == 'input'
    assert stem['macs'] == stem['flops'] and stem['sops'] == 0
    assert report.totals['violations'] == []
    assert all(lay['spike_driven'] for n, lay in got.items() if n != stem['name'])
    assert report.totals['macs'] == stem['flops']
    # groups: one per stage tap, in the order of the architecture table
    assert got['ConvBlock1_2.0.fc1']['group'] == 'stage1'
    assert got['block3.5.attn.kv']['group'] == 'stage3'
    assert set(report.totals['groups']) == {f'stage{i}' for i in range(5)}


def test_fused_fast_path_gives_the_same_report():
    """BN folding, in-place quantisers and residual sums (``fuse_for_inference``) change
    no spike: the same layers, FLOPs and rates as the unfused model. In float64: in float32
    the folded BN rounds differently and whether a spike next to a quantiser level moves
    depends on the CPU's convolution kernels (NNPACK's Winograd, oneDNN's AVX-512 / AVX2)."""
    from mmsnn.models import fuse_for_inference
    torch.manual_seed(0)
    model = MetaSDT(embed_dims=(16, 16, 16, 16), mixer='srb').eval()
    with torch.no_grad():  # BN statistics that make the network fire
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.uniform_(0.05, 0.2)
    model.double()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    plain = energy_report(model, x)
    fused = energy_report(fuse_for_inference(model), x)
    assert [lay['name'] for lay in fused.layers] == [lay['name'] for lay in plain.layers]
    assert plain.totals['sops'] > 0
    for a, b in zip(plain.layers, fused.layers):
        assert (a['flops'], a['spike_driven']) == (b['flops'], b['spike_driven']), a['name']
        assert a['rate'] == pytest.approx(b['rate'], abs=1e-6), a['name']


def test_quadratic_attention_order_is_reported_as_run():
    n, c, heads = 16, 16, 8
    attn = SpikeDrivenAttention(c, heads, neuron=MultiSpikeQuantizer, attn_order='quadratic')
    got = by_name(energy_report(attn, torch.randn(1, c, 4, 4)))
    d, dv = c // heads, 4 * c // heads
    assert got['qk']['flops'] == heads * n * d * n  # (q k^T): [N, d] x [d, N]
    assert got['qkv']['flops'] == heads * n * n * dv  # (q k^T) v: [N, N] x [N, dv]
    assert 'kv' not in got


def test_spiking_heads_flops_by_hand():
    """Neck (1x1 laterals, 3x3 outputs), box head (Linear), mask head (conv, deconv, 1x1)."""
    from mmengine.registry import init_default_scope
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead  # noqa: F401
    init_default_scope('mmdet')  # the box coder is built from the default scope's registry
    from mmsnn.models.det_heads import SpikingFCNMaskHead, SpikingShared2FCBBoxHead
    from mmsnn.models.necks.spiking_fpn import SpikingFPN
    neck = SpikingFPN([4, 8], 8, num_outs=3)
    feats = (torch.randn(1, 4, 8, 6), torch.randn(1, 8, 4, 3))
    got = by_name(energy_report(neck, [feats]))
    assert got['lateral_convs.0.conv']['flops'] == 4 * 8 * 8 * 6
    assert got['lateral_convs.1.conv']['flops'] == 8 * 8 * 4 * 3
    assert got['fpn_convs.0.conv']['flops'] == 9 * 8 * 8 * 8 * 6
    assert got['fpn_convs.1.conv']['flops'] == 9 * 8 * 8 * 4 * 3
    assert len(got) == 4 and all(lay['spike_driven'] for lay in got.values())

    R, C, fc = 3, 8, 16
    box = SpikingShared2FCBBoxHead(in_channels=C, fc_out_channels=fc, roi_feat_size=7,
                                   num_classes=5).eval()
    got = by_name(energy_report(box, [torch.randn(R, C, 7, 7)]))
    assert got['shared_fcs.0']['flops'] == R * C * 7 * 7 * fc
    assert got['shared_fcs.1']['flops'] == R * fc * fc
    assert got['fc_cls']['flops'] == R * fc * (5 + 1)
    assert got['fc_reg']['flops'] == R * fc * 4 * 5  # class-specific boxes
    assert all(lay['type'] == 'Linear' and lay['spike_driven'] for lay in got.values())

    mask = SpikingFCNMaskHead(num_convs=2, in_channels=C, conv_out_channels=C,
                              num_classes=5).eval()
    got = by_name(energy_report(mask, [torch.randn(R, C, 14, 14)]))
    assert got['convs.0.conv']['flops'] == R * 9 * C * C * 14 * 14
    assert got['convs.1.conv']['flops'] == R * 9 * C * C * 14 * 14
    # 2x2 stride-2 deconv: every input element meets 2*2*C_out weights
    assert got['upsample']['flops'] == R * C * 14 * 14 * 2 * 2 * C
    assert got['conv_logits']['flops'] == R * C * 5 * 28 * 28
    assert all(lay['spike_driven'] for lay in got.values())


def _demo_detector():
    """The demo detector, randomly initialised, with BN statistics that make it fire and
    every box kept (score threshold 0), so that the RoI box and mask heads run."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(Config.fromfile(DEMO_DET).model))
    model.init_weights()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 2 + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) + 0.5)
    model.test_cfg.rcnn.score_thr = 0.0
    return model.eval()


def _plain_and_fused_reports(model, inputs, forward, monkeypatch):
    """Energy reports of ``forward(model, x)`` without and with the fast path
    (``fuse_for_inference``, as ``tools/test.py --fuse-conv-bn``)."""
    from mmsnn.models import fuse_for_inference
    from mmsnn.ops import roi_align as fast_roi_align
    plain = energy_report(model, inputs, forward=forward)
    fast_calls = []
    separable = fast_roi_align.separable_roi_align
    monkeypatch.setattr(fast_roi_align, 'separable_roi_align',
                        lambda *a, **k: fast_calls.append(1) or separable(*a, **k))
    fused = energy_report(fuse_for_inference(model, reuse_memory=False), inputs,
                          forward=forward)
    assert fast_calls, 'the RoIAlign fast path (matrix products) did not run'
    assert [lay['name'] for lay in fused.layers] == [lay['name'] for lay in plain.layers]
    assert plain.totals['violations'] == fused.totals['violations'] == []
    assert plain.totals['groups']['roi_head.mask_head']['sops'] > 0  # the heads ran and fired
    return plain, fused


@pytest.mark.slow
def test_fast_path_roi_align_is_free_and_totals_match_float64(monkeypatch):
    """``--fuse-conv-bn --energy``: RoIAlign computed as matrix products (the fast path's
    ``SeparableRoIAlign``) is data movement, not a synaptic layer, so the report of the
    fused demo detector is that of the plain one. (Backbone, neck, RPN head and the box /
    mask heads on fixed RoIs: mmcv's CPU NMS takes no float64.)

    How the tolerance is bounded: in float64 the fast path changes no spike (BN folding and
    RoIAlign as products differ from the plain model by ~1e-15 relative, far from a
    quantiser's rounding step; ``tests/test_deploy/test_convert_for_inference.py`` compares the spikes in float64), so
    every spike count, hence every FLOP, MAC and SOP, is the same. FLOPs and MACs are
    compared exactly; SOPs and energies are sums of the same terms in the same order,
    compared to rel 1e-12 (a few thousand float64 roundings of 1.1e-16 each). float32 would
    flip spikes that sit on a rounding boundary (Winograd convs round differently): see the
    float32 test below.
    """
    model = _demo_detector().double()
    x = torch.rand(1, 3, 96, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rois = torch.tensor([[0, 10., 12., 60., 70.], [0, 30., 5., 120., 90.],
                         [0, 0., 0., 127., 95.]], dtype=torch.float64)

    def heads(m, img):
        feats = m.extract_feat(img)
        m.rpn_head(feats)
        m.roi_head._bbox_forward(feats, rois)
        m.roi_head._mask_forward(feats, rois)

    plain, fused = _plain_and_fused_reports(model, x, heads, monkeypatch)
    for a, b in zip(plain.layers, fused.layers):
        assert (a['flops'], a['macs'], a['T']) == (b['flops'], b['macs'], b['T']), a['name']
        assert b['sops'] == pytest.approx(a['sops'], rel=1e-12, abs=0), a['name']
    for key in ('flops', 'macs'):
        assert fused.totals[key] == plain.totals[key], key
    for key in ('sops', 'energy_mj', 'energy_ann_mj'):
        assert fused.totals[key] == pytest.approx(plain.totals[key], rel=1e-12, abs=0), key


@pytest.mark.slow
def test_fast_path_roi_align_is_free_float32(monkeypatch):
    """End to end through ``predict`` in float32, as ``tools/test.py --fuse-conv-bn --energy``
    runs it. The fast path's Winograd convs round differently, so spikes on a rounding
    boundary may flip; only what no spike can change is compared, exactly: the layers, the
    (absent) violations, the dense MACs (the stem conv on the image: its shape alone) and the
    FLOPs of the backbone, neck and RPN head (shapes alone; the RoI heads' FLOPs follow the
    proposals NMS keeps, which flipped spikes may change)."""
    from mmdet.testing import demo_mm_inputs
    model = _demo_detector()
    data = model.data_preprocessor(demo_mm_inputs(1, [(3, 96, 128)], num_classes=3), False)

    def predict(m, d):
        return m.predict(d['inputs'], d['data_samples'])

    plain, fused = _plain_and_fused_reports(model, [data], predict, monkeypatch)
    assert fused.totals['macs'] == plain.totals['macs']
    assert plain.totals['macs'] == plain.layers[0]['flops']  # only the stem conv is dense
    for group in ('backbone', 'neck', 'rpn_head'):
        assert (fused.totals['groups'][group]['flops']
                == plain.totals['groups'][group]['flops']), group


# ----------------------------------------------------------- known spike counts

def test_rate_and_sops_from_a_quantiser_fed_constants():
    # channel 0 gets 1.2 (count 1), channel 1 gets 7.0 (clamped to 4): mean count 2.5
    model = nn.Sequential(MultiSpikeQuantizer(max_value=4, norm=4.0),
                          nn.Conv2d(2, 3, 3, padding=1, bias=True))
    x = torch.empty(1, 2, 5, 4)
    x[:, 0], x[:, 1] = 1.2, 7.0
    lay = energy_report(model, x).layers[0]
    flops = 9 * 2 * 3 * 5 * 4
    assert lay['name'] == '1' and lay['flops'] == flops
    assert lay['rate'] == pytest.approx(2.5)  # counts, not the quantiser's k/4 output
    assert lay['r'] == pytest.approx(2.5 / 4) and lay['D'] == 4
    assert lay['nonzero'] == 1.0
    assert lay['sops'] == pytest.approx(2.5 * flops) and lay['macs'] == 0
    assert lay['energy_mj'] == pytest.approx(E_AC * 2.5 * flops)


def test_rate_is_averaged_over_images_of_different_counts():
    model = nn.Sequential(MultiSpikeQuantizer(max_value=4, norm=1.0), nn.Linear(6, 2))
    images = [torch.full((1, 6), 1.0), torch.full((1, 6), 3.0), torch.zeros(1, 6)]
    report = energy_report(model, images)
    lay = report.layers[0]
    assert lay['rate'] == pytest.approx((1 + 3 + 0) / 3)
    assert lay['nonzero'] == pytest.approx(2 / 3)
    assert lay['sops'] == pytest.approx((1 + 3 + 0) / 3 * 6 * 2)
    assert report.meta['num_images'] == 3


def test_attention_products_charge_min_rate_and_q_rate():
    """q, k, v convs with zero weights and BN bias 2 / 1 / 3: counts 2, 1, 3 everywhere."""
    c, heads, h, w = 16, 8, 4, 4
    attn = SpikeDrivenAttention(c, heads, neuron=MultiSpikeQuantizer).eval()
    with torch.no_grad():
        for name, value in (('q_conv', 2.0), ('k_conv', 1.0), ('v_conv', 3.0)):
            seq = getattr(attn, name)
            seq[0].weight.zero_()
            seq[1].weight.zero_()
            seq[1].bias.fill_(value)
    got = by_name(energy_report(attn, torch.randn(1, c, h, w)))
    n, d, dv = h * w, c // heads, 4 * c // heads
    assert got['kv']['rate'] == pytest.approx(1.0)  # min(c_k = 1, c_v = 3)
    assert got['kv']['sops'] == pytest.approx(1.0 * heads * d * n * dv)
    assert got['qkv']['rate'] == pytest.approx(2.0)  # c_q against the integer k^T v
    assert got['qkv']['input_from'].endswith('kv (MatMul)')
    # y = q (k^T v) * 2 / sqrt(d) = (2/4)(1/4)(3/4) * N * d * 2 / sqrt(d) per element,
    # quantised (clamped to 4) before proj_conv
    y = 0.5 * 0.25 * 0.75 * n * d * 2 / d ** 0.5
    assert got['proj_conv.0']['rate'] == pytest.approx(min(4, round(y)))


def test_layer_fed_by_a_non_spike_op_is_flagged_and_charged_as_macs():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),        # 0: reads the image (encoding layer)
        MultiSpikeQuantizer(),
        nn.MaxPool2d(2),                      # max-pooling keeps spikes
        nn.Conv2d(4, 4, 1, bias=False),       # 3: spikes
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 1, bias=False),       # 5: reads BN output -> dense
        MultiSpikeQuantizer(),
        nn.AvgPool2d(2),                      # average pooling does not keep spikes
        nn.Conv2d(4, 2, 1, bias=False))       # 8: dense
    report = energy_report(model, torch.rand(1, 3, 8, 8))
    got = by_name(report)
    assert got['0']['input_from'] == 'input' and not got['0']['spike_driven']
    assert got['3']['spike_driven'] and got['3']['input_from'] == '2 (MaxPool2d)'
    for name, producer in (('5', '4 (BatchNorm2d)'), ('8', '7 (AvgPool2d)')):
        lay = got[name]
        assert not lay['spike_driven'] and lay['input_from'] == producer
        assert lay['macs'] == lay['flops'] > 0 and lay['sops'] == 0 and lay['rate'] is None
    assert [v['name'] for v in report.totals['violations']] == ['5', '8']
    macs = 9 * 3 * 4 * 8 * 8 + 4 * 4 * 4 * 4 + 4 * 2 * 2 * 2
    assert report.totals['macs'] == macs
    assert report.totals['energy_mj'] == pytest.approx(
        E_MAC * macs + E_AC * got['3']['sops'])


def test_values_alone_are_not_spikes():
    """{0, 1} values from a non-neuron op (ReLU of a sign) are not taken for spikes."""
    model = nn.Sequential(nn.Identity(), nn.ReLU(), nn.Linear(4, 3, bias=False))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    lay = energy_report(model, [x, x]).layers[0]
    assert not lay['spike_driven'] and lay['input_from'] == '1 (ReLU)'


def test_ilif_four_steps_cost_four_times_the_sops_of_one():
    """I-LIF fed a constant far above threshold fires D = 4 every step: the same spikes
    per step, so T = 4 costs 4x the SOPs of T = 1 (same FLOPs per step, same rate)."""
    reports = {}
    for T in (1, 4):
        torch.manual_seed(0)
        model = nn.Sequential(IntegerLIF(T=T, max_value=4, norm=4.0), nn.Conv2d(3, 5, 3))
        reports[T] = energy_report(model, [torch.full((T, 3, 6, 6), 10.0)]).layers[0]
    flops = 9 * 3 * 5 * 4 * 4
    for T, lay in reports.items():
        assert lay['flops'] == flops and lay['T'] == T
        assert lay['rate'] == pytest.approx(4.0)
    assert reports[1]['sops'] == pytest.approx(4.0 * flops)
    assert reports[4]['sops'] == pytest.approx(4 * reports[1]['sops'])


def test_time_first_spikingjelly_lif_is_recognised():
    """The time-first transformers' LIF (a spikingjelly node, [T, B, ...]): binary spikes,
    T from its input. Fed 5.0 it fires at every step (H = V + (X - V) / 2 >= 1, reset 0)."""
    from mmsnn.models.backbones.spiking_transformer_base import MultiStepLIF

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = MultiStepLIF()
            self.conv = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return self.conv(self.lif(x).flatten(0, 1))

    lay = energy_report(Net(), [torch.full((3, 1, 2, 4, 4), 5.0)]).layers[0]
    assert lay['T'] == 3 and lay['D'] == 1 and lay['flops'] == 2 * 3 * 4 * 4
    assert lay['rate'] == pytest.approx(1.0) and lay['sops'] == pytest.approx(3 * 2 * 3 * 16)


def test_bare_matmul_products_are_counted_once():
    """Products written as a bare ``@`` (the zoo transformers' attention) are counted and
    named after the module running them; MatMul modules are not counted twice."""

    class BareAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_spike, self.k_spike, self.v_spike = (MultiSpikeQuantizer(), MultiSpikeQuantizer(),
                                                        MultiSpikeQuantizer())

        def forward(self, x):  # x: [3, B, heads, N, d] constants
            q, k, v = self.q_spike(x[0]), self.k_spike(x[1]), self.v_spike(x[2])
            return q @ (k.transpose(-2, -1) @ v)

    heads, n, d = 2, 5, 3
    x = torch.empty(3, 1, heads, n, d)
    x[0], x[1], x[2] = 2.0, 1.0, 3.0  # counts 2, 1, 3
    got = by_name(energy_report(BareAttention(), [x]))
    assert sorted(got) == ['matmul0', 'matmul1']
    assert got['matmul0']['flops'] == heads * d * n * d  # k^T v
    assert got['matmul1']['flops'] == heads * n * d * d  # q (k^T v)
    assert got['matmul0']['rate'] == pytest.approx(1.0)  # min(c_k, c_v)
    assert got['matmul1']['rate'] == pytest.approx(2.0)  # c_q
    attn = SpikeDrivenAttention(16, 8, neuron=MultiSpikeQuantizer)
    names = by_name(energy_report(attn, torch.randn(1, 16, 2, 2)))
    assert 'kv' in names and not any('matmul' in name for name in names)


def test_meta_sdt_ilif_time_steps_multiply_sops_not_flops():
    torch.manual_seed(0)
    model = MetaSDT(embed_dims=(16, 16, 16, 16), mixer='conv', T=2,
                    neuron_cfg=dict(type='ILIF'))
    report = energy_report(model, torch.randn(1, 3, 32, 32))
    got = by_name(report)
    stem = got['downsample1_1.encode_conv']
    assert stem['flops'] == conv(7, 3, 8, 16, 16)  # per time step
    lay = got['block3.0.attn.q_conv.0']
    assert lay['T'] == 2 and lay['flops'] == 16 * 16 * 2 * 2
    assert lay['sops'] == pytest.approx(2 * lay['rate'] * lay['flops'])


class _KeepTimeBackboneAndNeck(nn.Module):
    """I-LIF features ``[T, B, C, H, W]`` (what ``MetaSDT(T=3, keep_time=True)`` returns)
    into a spiking FPN that folds the steps into the batch."""

    def __init__(self, T, neck):
        super().__init__()
        self.T = T
        self.lifs = nn.ModuleList([IntegerLIF(T=T), IntegerLIF(T=T)])
        self.neck = neck

    def forward(self, feats):
        feats = [lif(f.flatten(0, 1)).reshape(f.shape) for lif, f in zip(self.lifs, feats)]
        return self.neck(feats)


def test_neck_time_steps_are_read_when_the_neck_runs():
    """A neck fed ``[T, B, ...]`` features from a multi-step backbone folds the steps into
    the batch; its I-LIF neurons get ``T`` from ``follow_time`` only during the forward
    pass, its quantisers never: both must report FLOPs per step and ``T`` = 3."""
    from mmsnn.models.necks.spiking_fpn import SpikingFPN
    T = 3
    feats = [torch.rand(T, 1, 4, 8, 6) * 3, torch.rand(T, 1, 8, 4, 3) * 3]
    hand = {'lateral_convs.0.conv': 4 * 8 * 8 * 6, 'lateral_convs.1.conv': 8 * 8 * 4 * 3,
            'fpn_convs.0.conv': 9 * 8 * 8 * 8 * 6, 'fpn_convs.1.conv': 9 * 8 * 8 * 4 * 3}
    for neuron_cfg in (dict(type='ILIF'), None):  # I-LIF built without T; the quantiser
        torch.manual_seed(0)
        model = _KeepTimeBackboneAndNeck(T, SpikingFPN([4, 8], 8, num_outs=3,
                                                       neuron_cfg=neuron_cfg))
        report = energy_report(model, [feats])
        got = by_name(report)
        assert sorted(got) == sorted(f'neck.{name}' for name in hand)
        for name, flops in hand.items():
            lay = got[f'neck.{name}']
            assert lay['flops'] == flops and lay['T'] == T, (neuron_cfg, name)
            assert lay['spike_driven']
            assert lay['sops'] == pytest.approx(T * lay['rate'] * flops)
        assert report.totals['energy_ann_mj'] == pytest.approx(E_MAC * sum(hand.values()))
        assert report.meta['T'] == T


class _DenseStreams(nn.Module):
    """T = 4 direct encoding, then a real-valued multi-step residual stream read by a conv,
    and 8 rows ("RoIs") of the time-averaged map read by a linear layer."""

    T, H, W = 4, 4, 4

    def __init__(self):
        super().__init__()
        self.encode = nn.Conv2d(3, 4, 3, padding=1)  # the image, the same at every step
        self.lif = IntegerLIF(T=self.T)
        self.conv = nn.Conv2d(4, 4, 1)               # spikes
        self.dense = nn.Conv2d(4, 2, 1)              # the residual stream: 4 different steps
        self.head = nn.Linear(4, 3)                  # 8 rows after the mean over time

    def forward(self, x):  # [1, 3, H, W]
        x = x.unsqueeze(0).expand(self.T, *x.shape).flatten(0, 1)
        s = self.lif(self.encode(x))
        stream = self.conv(s) + s
        y = self.dense(stream)
        mean = stream.reshape(self.T, 1, 4, self.H, self.W).mean(0)  # [1, 4, H, W]
        rows = mean.flatten(2).transpose(1, 2)[0, :8]  # [8, 4]: leading dim 8 = 2 * T
        return y, self.head(rows)


def test_dense_input_is_charged_by_where_it_comes_from():
    """The image repeated over T is charged once; a real-valued tensor computed from neurons
    holds T different steps and is charged T times; rows that merely number a multiple of T
    (8 rows at T = 4) after the mean over time are not time steps."""
    net, T = _DenseStreams(), _DenseStreams.T
    got = by_name(energy_report(net, torch.rand(1, 3, 4, 4)))
    enc = got['encode']
    assert enc['flops'] == 9 * 3 * 4 * 16 and enc['T'] == T
    assert enc['macs'] == enc['flops']  # once per image
    assert enc['input_from'] == 'input' and not enc['spike_driven']
    dense = got['dense']
    assert dense['flops'] == 4 * 2 * 16 and dense['T'] == T  # per step
    assert dense['macs'] == T * dense['flops']  # T steps of dense work
    head = got['head']
    assert head['flops'] == 8 * 4 * 3 and head['T'] == 1 and head['macs'] == head['flops']
    assert got['conv']['spike_driven'] and got['conv']['T'] == T


def test_energy_hook_leaves_nothing_behind_when_a_test_step_raises(tmp_path):
    """mmengine calls no hook after a test step raises: the counter's torch-function mode
    must not stay pushed, and the model must not keep the counting hooks."""
    from types import SimpleNamespace

    from mmsnn.engine.hooks import EnergyHook

    class Failing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def test_step(self, data):
            self.conv(torch.stack(data['inputs']))
            raise RuntimeError('corrupt image')

    runner = SimpleNamespace(model=Failing(), work_dir=str(tmp_path))
    batch = dict(inputs=[torch.rand(3, 4, 4)])
    depth = torch._C._len_torch_function_stack()
    hook = EnergyHook()
    try:
        hook.before_test(runner)
        with pytest.raises(RuntimeError, match='corrupt image'):
            # the order of mmengine's TestLoop.run_iter
            hook.before_test_iter(runner, 0, batch)
            runner.model.test_step(batch)
            hook.after_test_iter(runner, 0, batch, None)
        assert torch._C._len_torch_function_stack() == depth
        assert not runner.model.conv._forward_hooks and not runner.model.conv._forward_pre_hooks
        assert 'test_step' not in vars(runner.model)
    finally:  # do not let a failure here leak the mode into the other tests
        while torch._C._len_torch_function_stack() > depth:
            torch._C._pop_torch_function_stack()


def test_energy_report_is_exported_from_the_package():
    import mmsnn.analysis
    from mmsnn.analysis import EnergyReport, energy_report as exported
    from mmsnn.analysis import energy
    assert exported is energy.energy_report and EnergyReport is energy.EnergyReport
    assert {'energy_report', 'EnergyReport'} <= set(mmsnn.analysis.__all__)


# ---------------------------------------------------------------------- outputs

def test_report_files(tmp_path):
    model = nn.Sequential(MultiSpikeQuantizer(), nn.Conv2d(2, 3, 1))
    report = energy_report(model, torch.full((2, 2, 4, 4), 2.0), preset='int8',
                           meta=dict(note='x'))
    paths = report.save(str(tmp_path))
    data = json.load(open(paths['json']))
    assert data['meta']['e_ac_pj'] == 0.03 and data['meta']['note'] == 'x'
    assert data['layers'][0]['rate'] == pytest.approx(2.0)
    rows = list(csv.DictReader(open(paths['csv'])))
    assert rows[0]['name'] == '1' and float(rows[0]['sops']) == pytest.approx(2 * 2 * 3 * 16)
    assert open(paths['figure'], 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert 'E_ANN/E_SNN' in open(paths['table']).read()


# -------------------------------------------------------------------------- CLI

@pytest.fixture(scope='module')
def demo_coco(tmp_path_factory):
    from mmsnn.datasets import generate_demo_coco
    root = str(tmp_path_factory.mktemp('demo_coco_energy'))
    generate_demo_coco(root, num_train=1, num_val=2, image_size=(64, 64), seed=3)
    return root + '/'


def test_cli_on_demo_detector_writes_the_files(demo_coco, tmp_path, run_tool):
    out = tmp_path / 'work'
    proc = run_tool('tools/analysis/energy.py', DEMO_DET, '--num-images', '2', '--work-dir',
                    out, '--cfg-options', f'data_root={demo_coco}')
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ('energy.txt', 'energy.json', 'energy.csv', 'energy_rates.png'):
        assert (out / name).is_file(), name
    data = json.loads((out / 'energy.json').read_text())
    assert data['meta']['num_images'] == 2
    names = [lay['name'] for lay in data['layers']]
    assert names[0] == 'backbone.downsample1_1.encode_conv'
    assert data['layers'][0]['input_from'] == 'input'
    assert 'backbone.block3.0.attn.kv' in names and 'rpn_head.rpn_conv.0.conv' in names
    assert data['totals']['violations'] == []  # the spiking demo detector is spike-driven
    groups = data['totals']['groups']
    for g in ('backbone', 'backbone.stage0', 'neck', 'rpn_head', 'roi_head'):
        assert g in groups
    t = data['totals']
    assert t['energy_mj'] == pytest.approx(E_MAC * t['macs'] + E_AC * t['sops'])
    assert t['energy_ann_mj'] == pytest.approx(E_MAC * t['flops'])
    assert 'E_ANN/E_SNN' in proc.stdout


def test_cli_on_demo_segmentor_generates_the_demo_data(tmp_path, run_tool):
    out, data_dir = tmp_path / 'work', tmp_path / 'ade'
    proc = run_tool('tools/analysis/energy.py', DEMO_SEG, '--num-images', '1', '--work-dir',
                    out, '--demo-data', data_dir, '--preset', 'int8')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (data_dir / 'images' / 'validation').is_dir()  # written because it was missing
    data = json.loads((out / 'energy.json').read_text())
    assert data['meta']['num_images'] == 1 and data['meta']['e_mac_pj'] == 0.23
    assert data['meta']['input_shapes'] == ['[1, 3, 128, 128]']
    names = [lay['name'] for lay in data['layers']]
    assert names[-1] == 'decode_head.conv_seg'
    assert {'neck', 'decode_head', 'backbone.stage4'} <= set(data['totals']['groups'])
    assert data['totals']['violations'] == []


def test_cli_bad_input_is_one_line(tmp_path, run_tool_each):
    cases = (([DEMO_DET, '--num-images', '0'], '--num-images'),
             ([DEMO_DET, str(tmp_path / 'missing.pth')], 'missing.pth'),
             ([str(tmp_path / 'nope.py')], 'nope.py'))
    procs = run_tool_each([('tools/analysis/energy.py', argv) for argv, _ in cases])
    for proc, (_, needle) in zip(procs, cases):
        assert proc.returncode == 2, proc.stderr[-3000:]
        err = proc.stderr
        assert err.count('error: ') == 1 and needle in err.splitlines()[0], err
        assert 'Traceback' not in err


def test_test_py_energy_adds_the_report(tmp_path, run_tool):
    """``tools/test.py --energy`` on the toy classifier (tests/data/toy_config.py): the
    report covers every test image, and the linear head that reads the tap's mean (not
    spikes) is listed as a violation."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    toy = osp.join(REPO, 'tests', 'data', 'toy_config.py')
    init_default_scope('mmdet')
    import mmsnn_toy  # noqa: F401  (tests/data is on sys.path: conftest)
    model = MODELS.build(Config.fromfile(toy).model)
    ckpt = tmp_path / 'toy.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    out = tmp_path / 'work'
    proc = run_tool('tools/test.py', toy, ckpt, '--energy', '--work-dir', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / 'metrics.json').is_file()
    data = json.loads((out / 'energy' / 'energy.json').read_text())
    assert data['meta']['num_images'] == 4  # the toy test set, one image per batch
    assert [v['name'] for v in data['totals']['violations']] == ['head']
    # the step shared with tools/analysis/energy.py records what the model's forward gets
    assert data['meta']['input_shapes'] == ['[1, 3, 32, 32]']  # toy_config: 32 px, batch 1
    assert (out / 'energy' / 'energy_rates.png').is_file()
    assert 'E_ANN/E_SNN' in proc.stdout


# ------------------------------------------------------------- hook and test loop

def _toy_cfg(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'tests', 'data', 'toy_config.py'))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.test_dataloader.batch_size = 1
    return cfg


@pytest.mark.slow
def test_energy_hook_is_registered_for_configs(tmp_path):
    """``custom_hooks=[dict(type='EnergyHook', ...)]`` in a config: the runner builds the
    hook from mmsnn's registration (both toolboxes) and the test run writes its report."""
    from mmdet.registry import HOOKS as DET_HOOKS
    from mmengine.runner import Runner
    from mmseg.registry import HOOKS as SEG_HOOKS

    from mmsnn.analysis.energy import EnergyHook as old_location
    from mmsnn.engine.hooks import EnergyHook
    assert DET_HOOKS.get('EnergyHook') is EnergyHook is SEG_HOOKS.get('EnergyHook')
    assert old_location is EnergyHook  # the former import path still works

    import mmsnn_toy  # noqa: F401  (tests/data is on sys.path: conftest)
    cfg = _toy_cfg(tmp_path)
    cfg.custom_hooks = [dict(type='EnergyHook', out_dir=str(tmp_path / 'energy'),
                             preset='int8')]
    cfg.load_from = None
    runner = Runner.from_cfg(cfg)
    runner.test()
    data = json.loads((tmp_path / 'energy' / 'energy.json').read_text())
    assert data['meta']['num_images'] == 4 and data['meta']['e_ac_pj'] == 0.03
    assert [v['name'] for v in data['totals']['violations']] == ['head']


def test_count_test_images_stops_at_num_images_and_unhooks():
    """The loop of ``tools/analysis/energy.py``: ``num_images`` test steps, one image each,
    through ``model.test_step``; the counting hooks are gone afterwards."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmsnn.analysis.energy import count_test_images
    init_default_scope('mmdet')
    import mmsnn_toy  # noqa: F401
    model = MODELS.build(Config.fromfile(
        osp.join(REPO, 'tests', 'data', 'toy_config.py')).model).eval()
    batches = [dict(inputs=torch.randn(1, 3, 16, 16), data_samples=torch.tensor([0]))
               for _ in range(5)]
    ticks = []
    counter = count_test_images(model, batches, 3, progress=lambda: ticks.append(1))
    assert counter.num_images == 3 and len(ticks) == 3
    assert counter.input_shapes == [(1, 3, 16, 16)] * 3
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    report = counter.report()
    assert report.layers[0]['input_from'] == 'input'
