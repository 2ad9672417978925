"""Stateful neurons in the neck and heads run the T steps of their input.

A neck / head built with ``neuron_cfg=dict(type='ILIF')`` (no T) gets time-folded
``[T*B, ...]`` features; it must compute exactly what the same weights compute with the T
written into ``neuron_cfg``, and a step's output must depend on the earlier steps (the
membrane), never on the later ones.
"""
import torch
from mmengine.registry import init_default_scope

import mmsnn  # noqa: F401  (registers the mmsnn modules)

T, B = 3, 2


def _pair(build, **kw):
    """(model with neuron_cfg ILIF and no T, the same weights with T in neuron_cfg)."""
    a = build(neuron_cfg=dict(type='ILIF', norm=1.0), **kw).eval()
    b = build(neuron_cfg=dict(type='ILIF', norm=1.0, T=T), **kw).eval()
    b.load_state_dict(a.state_dict())
    return a, b


def _neck(**kw):
    from mmsnn.models.necks import SpikingFPN
    torch.manual_seed(0)
    return SpikingFPN([4, 8], 8, num_outs=3, **kw)


def _feats(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(T, B, 4, 16, 16, generator=g) * 3,
            torch.rand(T, B, 8, 8, 8, generator=g) * 3]


def test_neck_neurons_follow_the_time_axis():
    a, b = _pair(_neck)
    x = _feats()
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
        for oa, ob in zip(out_a, out_b):
            assert oa.shape[:2] == (T, B)
            assert torch.equal(oa, ob)
        # step 0 changes -> later steps change (membrane), step 0 of the others does not
        y = [f.clone() for f in x]
        y[0][0, 0] += 1.0
        y[1][0, 0] += 1.0
        changed = a(y)[0]
    assert not torch.equal(changed[1, 0], out_a[0][1, 0])  # the next step of that sample
    assert torch.equal(changed[:, 1], out_a[0][:, 1])       # the other sample
    # and the reverse: a later step does not reach back
    y = [f.clone() for f in x]
    y[0][2] += 1.0
    with torch.no_grad():
        assert torch.equal(a(y)[0][:2], out_a[0][:2])


def test_rpn_head_neurons_follow_the_time_axis():
    init_default_scope('mmdet')
    from mmsnn.models.det_heads import SpikingRPNHead

    def build(**kw):
        torch.manual_seed(0)
        return SpikingRPNHead(
            8, feat_channels=8,
            anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[1.0],
                                  strides=[4]), **kw)

    a, b = _pair(build)
    x = torch.rand(T, B, 8, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        for ya, yb in zip(a.forward_single(x), b.forward_single(x)):
            assert ya.shape[0] == B and torch.equal(ya, yb)


def test_roi_heads_neurons_follow_the_time_axis():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS

    def build(neuron_cfg):
        torch.manual_seed(0)
        return MODELS.build(dict(
            type='SpikingRoIHead',
            bbox_roi_extractor=dict(type='SingleRoIExtractor', out_channels=8,
                                    roi_layer=dict(type='RoIAlign', output_size=7,
                                                   sampling_ratio=2),
                                    featmap_strides=[4]),
            bbox_head=dict(type='SpikingShared2FCBBoxHead', in_channels=8, fc_out_channels=16,
                           num_classes=3, neuron_cfg=neuron_cfg),
            mask_roi_extractor=dict(type='SingleRoIExtractor', out_channels=8,
                                    roi_layer=dict(type='RoIAlign', output_size=14,
                                                   sampling_ratio=2),
                                    featmap_strides=[4]),
            mask_head=dict(type='SpikingFCNMaskHead', num_convs=1, in_channels=8,
                           conv_out_channels=8, num_classes=3, neuron_cfg=neuron_cfg)))

    a = build(dict(type='ILIF', norm=1.0)).eval()
    b = build(dict(type='ILIF', norm=1.0, T=T)).eval()
    b.load_state_dict(a.state_dict())
    feats = (torch.rand(B, T, 8, 16, 16, generator=torch.Generator().manual_seed(2)) * 3,)
    rois = torch.tensor([[0, 2., 2., 40., 30.], [1, 10., 8., 60., 60.], [1, 0., 0., 20., 50.]])
    with torch.no_grad():
        ba, bb = a._bbox_forward(feats, rois), b._bbox_forward(feats, rois)
        ma, mb = a._mask_forward(feats, rois), b._mask_forward(feats, rois)
    assert torch.equal(ba['cls_score'], bb['cls_score'])
    assert torch.equal(ba['bbox_pred'], bb['bbox_pred'])
    assert torch.equal(ma['mask_preds'], mb['mask_preds'])


def test_seg_head_neurons_follow_the_time_axis():
    from mmsnn.models.seg_heads import SpikingFPNHead

    def build(**kw):
        torch.manual_seed(0)
        return SpikingFPNHead(in_channels=[4, 8], in_index=[0, 1], channels=8,
                              feature_strides=[2, 4], num_classes=3, **kw)

    a, b = _pair(build)
    x = _feats(3)
    with torch.no_grad():
        la, lb = a(x), b(x)
    assert la.shape[0] == B and torch.equal(la, lb)
