"""The separable RoIAlign (``mmsnn.ops.roi_align``) against mmcv's RoIAlign kernel.

mmcv's op is the oracle: it is computed independently (its C++ kernel), never by the code under
test. float64 results must agree to 1e-12 (only the summation order differs), float32 to 1e-5.
"""
import itertools

import pytest
import torch
import torch.nn as nn
from mmcv.ops import RoIAlign, roi_align

from mmsnn.ops import roi_align as fra
from mmsnn.ops.roi_align import SeparableRoIAlign, separable_roi_align, swap_roi_align


def make_rois(num_images, height, width, scale, dtype, seed, degenerate=False):
    """RoIs in image coordinates for a ``height x width`` map at ``scale``: normal, tiny
    (under a map pixel), larger than the map, partly and fully outside, on the half-pixel
    lattice around the borders (samples exactly at -1, 0, H - 1, H), over ``num_images``
    images; with ``degenerate`` also boxes with x2 < x1 or y2 < y1."""
    g = torch.Generator().manual_seed(seed)
    img_h, img_w = height / scale, width / scale

    def boxes(n, x_lo, x_hi, y_lo, y_hi, w_lo, w_hi, h_lo, h_hi):
        x1 = torch.empty(n, dtype=torch.float64).uniform_(x_lo, x_hi, generator=g)
        y1 = torch.empty(n, dtype=torch.float64).uniform_(y_lo, y_hi, generator=g)
        bw = torch.empty(n, dtype=torch.float64).uniform_(w_lo, w_hi, generator=g)
        bh = torch.empty(n, dtype=torch.float64).uniform_(h_lo, h_hi, generator=g)
        return torch.stack([x1, y1, x1 + bw, y1 + bh], 1)

    px = 1 / scale  # one map pixel in image coordinates
    parts = [
        boxes(24, 0, img_w, 0, img_h, px, img_w / 2, px, img_h / 2),  # normal
        boxes(8, -px, img_w, -px, img_h, 0, px, 0, px),  # tiny
        boxes(6, -img_w / 2, 0, -img_h / 2, 0, img_w, 2 * img_w, img_h, 2 * img_h),  # large
        boxes(8, -img_w / 4, img_w, -img_h / 4, img_h, img_w / 4, img_w / 2,
              img_h / 4, img_h / 2),  # often partly outside
        boxes(4, img_w + 2 * px, 2 * img_w, 0, img_h, px, 4 * px, px, 4 * px),  # right of it
        boxes(4, 0, img_w, -img_h, -4 * px, px, 4 * px, px, 2 * px),  # above it
    ]
    # corners on the half-pixel lattice around the borders, in map pixels
    lattice = []
    for a, size in itertools.product((-2, -1.5, -1, -0.5, 0, 0.5, 1), (0.5, 1, 2, 3)):
        lattice.append([a, a, a + size, a + size])
        lattice.append([width - a - size, height - a - size, width - a, height - a])
        lattice.append([a, height - a - size, a + size, height - a])
    parts.append(torch.tensor(lattice, dtype=torch.float64) * px)
    if degenerate:
        flipped = boxes(8, 0, img_w, 0, img_h, -4 * px, 0, -4 * px, 4 * px)
        parts.append(flipped)
    xyxy = torch.cat(parts)
    batch = torch.randint(num_images, (len(xyxy), 1), generator=g).double()
    return torch.cat([batch, xyxy], 1).to(dtype)


CASES = [  # (aligned, sampling_ratio, output size, spatial scale)
    (True, 0, 7, 1 / 4), (True, 0, 14, 1 / 8), (True, 2, 7, 1 / 16), (True, 2, 14, 1 / 32),
    (False, 0, 7, 1 / 8), (False, 0, 14, 1 / 4), (False, 2, 7, 1 / 32), (False, 2, 14, 1 / 16),
    (True, 0, (7, 5), 1 / 4), (False, 1, (3, 6), 1 / 8), (True, 0, 7, 1 / 6),
]


@pytest.mark.parametrize('aligned,sampling_ratio,output_size,scale', CASES)
def test_float64_matches_mmcv_to_1e12(aligned, sampling_ratio, output_size, scale):
    torch.manual_seed(0)
    feats = torch.randn(3, 5, 23, 31, dtype=torch.float64)
    rois = make_rois(3, 23, 31, scale, torch.float64, seed=1, degenerate=not aligned)
    expected = roi_align(feats, rois, output_size, scale, sampling_ratio, 'avg', aligned)
    for chunk in (fra.CHUNK_ELEMENTS, 3000):  # one chunk per width / many small chunks
        got = separable_roi_align(feats, rois, output_size, scale, sampling_ratio, aligned,
                                  chunk_elements=chunk)
        assert got.shape == expected.shape and got.dtype == torch.float64
        assert (got - expected).abs().max() < 1e-12


def test_float64_boundary_samples():
    """Samples exactly on y = -1, y = H, x = -1, x = W (counted, clamped) and just beyond
    (dropped): one sample per bin, so each rule decides a whole output value."""
    feats = torch.randn(1, 2, 6, 9, dtype=torch.float64) + 3
    w, h = 9, 6
    rois = []
    for lo in (-1.5, -1.25, -1.0, -0.5, h - 1.0, h - 0.5, h + 0.0, h + 0.25):
        rois.append([0, 2.0, lo, 3.0, lo + 1.0])      # sample at y = lo + 0.5
        rois.append([0, lo, 2.0, lo + 1.0, 3.0])      # the same in x
    for lo in (-1.5, -1.25, w - 0.5, w + 0.0, w + 0.25):
        rois.append([0, lo, 2.0, lo + 1.0, 3.0])
    rois = torch.tensor(rois, dtype=torch.float64)
    expected = roi_align(feats, rois, 1, 1.0, 1, 'avg', False)
    got = separable_roi_align(feats, rois, 1, 1.0, 1, False)
    assert (expected == 0).any() and (expected != 0).any()  # both rules are exercised
    assert (got - expected).abs().max() < 1e-12


def test_float32_matches_mmcv():
    torch.manual_seed(0)
    feats = torch.randn(2, 16, 40, 56)
    for aligned, scale in ((True, 1 / 4), (False, 1 / 16)):
        rois = make_rois(2, 40, 56, scale, torch.float32, seed=2, degenerate=not aligned)
        expected = roi_align(feats, rois, 7, scale, 0, 'avg', aligned)
        got = separable_roi_align(feats, rois, 7, scale, 0, aligned)
        assert got.dtype == torch.float32
        assert (got - expected).abs().max() < 1e-5


def test_channels_last_and_strided_input():
    torch.manual_seed(0)
    base = torch.randn(2, 6, 20, 30, dtype=torch.float64)
    rois = make_rois(2, 20, 30, 1 / 8, torch.float64, seed=3)
    expected = roi_align(base, rois, 7, 1 / 8, 0, 'avg', True)
    for feats in (base.contiguous(memory_format=torch.channels_last),
                  torch.randn(2, 6, 20, 40, dtype=torch.float64)[..., 5:35].copy_(base)):
        got = separable_roi_align(feats, rois, 7, 1 / 8, 0, True)
        assert (got - expected).abs().max() < 1e-12


def test_empty_rois():
    feats = torch.randn(1, 4, 10, 12)
    rois = torch.zeros(0, 5)
    expected = roi_align(feats, rois, 7, 0.25, 0, 'avg', True)
    got = separable_roi_align(feats, rois, 7, 0.25, 0, True)
    assert got.shape == expected.shape == (0, 4, 7, 7)
    layer = SeparableRoIAlign(7, 0.25, 0)
    with torch.no_grad():
        assert layer(feats, rois).shape == (0, 4, 7, 7)


def test_module_dispatch(monkeypatch):
    """No grad and enough samples: the separable path; with grad (training, ERF probes),
    few RoIs or aligned RoIs of negative size: mmcv's op itself, bit for bit."""
    calls = []
    original = fra.separable_roi_align
    monkeypatch.setattr(fra, 'separable_roi_align',
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    torch.manual_seed(0)
    ref = RoIAlign(7, 1 / 4, 0, 'avg', True)
    layer = SeparableRoIAlign.from_roi_align(ref)
    assert (layer.output_size, layer.spatial_scale, layer.sampling_ratio, layer.aligned) == \
        (ref.output_size, ref.spatial_scale, ref.sampling_ratio, ref.aligned)
    feats = torch.randn(2, 8, 24, 32, requires_grad=True)
    rois = make_rois(2, 24, 32, 1 / 4, torch.float32, seed=4)

    out = layer(feats, rois)  # grad enabled
    assert not calls and out.grad_fn is not None
    assert torch.equal(out, ref(feats, rois))
    out.sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0

    with torch.no_grad():
        fast = layer(feats, rois)
        assert calls == [1] and fast.grad_fn is None
        assert (fast - ref(feats, rois)).abs().max() < 1e-5
        few = rois[:2].clone()
        few[:, 3:] = few[:, 1:3] + 4  # two 1-pixel boxes: cheaper in mmcv's kernel
        assert torch.equal(layer(feats, few), ref(feats, few)) and calls == [1]
        flipped = rois.clone()
        flipped[0, 3] = flipped[0, 1] - 8  # x2 < x1: mmcv's CPU kernel refuses it
        with pytest.raises(RuntimeError):
            ref(feats, flipped)
        with pytest.raises(RuntimeError):
            layer(feats, flipped)
        assert calls == [1]
        as_f64 = layer(feats.detach().double(), rois.double())
        assert calls == [1, 1] and as_f64.dtype == torch.float64


def test_swap_roi_align_replaces_avg_layers_only():
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    torch.manual_seed(0)
    model = nn.ModuleDict(dict(
        bbox=SingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=0), 8,
                                [4, 8]),
        keep=RoIAlign(7, 1.0, 0, pool_mode='max')))
    feats = [torch.randn(1, 8, 32, 48, dtype=torch.float64),
             torch.randn(1, 8, 16, 24, dtype=torch.float64)]
    rois = make_rois(1, 32, 48, 1 / 4, torch.float64, seed=5)
    with torch.no_grad():
        expected = model['bbox'](feats, rois)
    names = swap_roi_align(model)
    assert names == ['bbox.roi_layers.0', 'bbox.roi_layers.1']
    assert all(type(m) is SeparableRoIAlign for m in model['bbox'].roi_layers)
    assert type(model['keep']) is RoIAlign
    assert [m.spatial_scale for m in model['bbox'].roi_layers] == [1 / 4, 1 / 8]
    assert swap_roi_align(model) == []  # idempotent
    with torch.no_grad():
        got = model['bbox'](feats, rois)
    assert (got - expected).abs().max() < 1e-12


def test_fuse_for_inference_swaps_roi_align():
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

    from mmsnn.deploy import convert_for_inference
    model = nn.ModuleDict(dict(mask=SingleRoIExtractor(
        dict(type='RoIAlign', output_size=14, sampling_ratio=0), 8, [4, 8, 16, 32])))
    convert_for_inference(model)
    assert all(type(m) is SeparableRoIAlign for m in model['mask'].roi_layers)
    assert [m.output_size for m in model['mask'].roi_layers] == [(14, 14)] * 4
