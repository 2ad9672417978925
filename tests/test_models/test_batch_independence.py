"""Input gradients at batch 1 (ERF probes run there) against the same sample in a batch of two.

torch 2.13 (CPU) computes BatchNorm's backward wrongly when the batch holds one sample and the
incoming gradient is channels-last strided while the input is not, e.g. BN followed by
``flatten(2).transpose(-1, -2)`` (a ViT-style patch embedding). In eval mode the samples of a
batch are independent, so a sample's input gradient must not depend on its batch-mates.
"""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmsnn  # noqa: F401  (registers the mmsnn modules)
from mmsnn.analysis import compute_erf, make_noise_inputs
from mmsnn.models import MetaSDT

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_DEMO = osp.join(REPO, 'configs', 'det', 'demo', 'sdt_srb_s_demo.py')
SEG_DEMO = osp.join(REPO, 'configs', 'seg', 'demo', 'sdt_srb_demo.py')


class PatchEmbed(nn.Module):
    """conv + BN -> tokens ``[B, N, C]`` -> LayerNorm -> back to a ``[B, C, H, W]`` map:
    the layout in which torch's batch-1 BatchNorm backward goes wrong."""

    def __init__(self, C=4):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.bn = nn.BatchNorm2d(C)
        self.norm = nn.LayerNorm(C)
        with torch.no_grad():  # non-trivial statistics and affine parameters
            self.bn.running_mean.normal_()
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.normal_()
            self.bn.bias.normal_()
            self.norm.weight.normal_()

    def forward(self, x):
        B, _, H, W = x.shape
        tokens = self.norm(self.bn(self.conv(x)).flatten(2).transpose(-1, -2))
        return tokens.transpose(1, 2).reshape(B, -1, H, W)


def _centre_erf_of_sample0_in_batch_of_two(model, x):
    """|d (sum over channels of y[0, :, h // 2, w // 2]) / d x[0]|, mean over RGB, computed
    with plain autograd on a batch of two (where torch's BatchNorm backward is right)."""
    x = x.clone().requires_grad_(True)
    y = model(x)
    objective = y[0, :, y.shape[-2] // 2, y.shape[-1] // 2].sum()
    grad, = torch.autograd.grad(objective, x)
    return grad[0].abs().mean(0)


def test_erf_engine_is_immune_to_the_batch1_batchnorm_bug():
    torch.manual_seed(0)
    model = PatchEmbed().eval()
    x = make_noise_inputs(2, (8, 8), seed=1)
    expected = _centre_erf_of_sample0_in_batch_of_two(model, x)
    assert expected.sum() > 0
    erf = compute_erf(model, x[:1], {'out': 0}).maps['out'][0, 0]  # batch 1
    torch.testing.assert_close(erf, expected, rtol=1e-5, atol=1e-7)
    # the model's own BN came back: the forward is untouched after the probe
    assert not model.bn._forward_hooks and not model.training


def _same_grads_at_batch_1_and_2(forward, x):
    """``forward(x)`` -> list of tensors whose leading dim belongs to the samples (or to
    per-sample RoIs, sample 0's first). Compares d(sum <out, w>)/dx of sample 0 alone with
    sample 0's rows of the same gradient in the batch of two."""
    torch.manual_seed(1)
    x2 = x.clone().requires_grad_(True)
    outs = forward(x2)
    weights = [torch.randn_like(o) for o in outs]
    grad2, = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), x2)
    x1 = x[:1].clone().requires_grad_(True)
    outs = forward(x1)
    grad1, = torch.autograd.grad(
        sum((o * w[:o.shape[0]]).sum() for o, w in zip(outs, weights)), x1)
    assert grad1.abs().sum() > 0
    torch.testing.assert_close(grad1[0], grad2[0], rtol=1e-9, atol=1e-12)


def _build(path, scope):
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(Config.fromfile(path).model)
    model.init_weights()
    with torch.no_grad():  # BN statistics as after training, not the (0, 1) init
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.double().eval()


def test_backbone_gradients_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = MetaSDT(embed_dims=(8, 16, 16, 16), mixer='srb', out_indices=(0, 1, 2, 3, 4))
    model = model.double().eval()
    x = make_noise_inputs(2, (32, 48), seed=2, dtype=torch.float64)
    _same_grads_at_batch_1_and_2(lambda x: list(model(x)), x)


@pytest.mark.slow
def test_detector_gradients_do_not_depend_on_the_batch():
    model = _build(DET_DEMO, 'mmdet')
    x = make_noise_inputs(2, (64, 64), seed=3, dtype=torch.float64)
    rois = torch.tensor([[0, 4., 6., 40., 50.], [0, 20., 10., 63., 63.],
                         [1, 0., 0., 63., 63.]], dtype=torch.float64)

    def forward(x):
        feats = model.extract_feat(x)
        cls, reg = model.rpn_head(feats)
        r = rois[rois[:, 0] < x.shape[0]]  # sample 0's RoIs come first
        bbox = model.roi_head._bbox_forward(feats, r)
        mask = model.roi_head._mask_forward(feats, r)
        return (list(feats) + list(cls) + list(reg)
                + [bbox['cls_score'], bbox['bbox_pred'], mask['mask_preds']])

    _same_grads_at_batch_1_and_2(forward, x)


@pytest.mark.slow
def test_segmentor_gradients_do_not_depend_on_the_batch():
    model = _build(SEG_DEMO, 'mmseg')
    x = make_noise_inputs(2, (64, 64), seed=4, dtype=torch.float64)
    _same_grads_at_batch_1_and_2(lambda x: [model._forward(x)], x)
