"""One ``norm_cfg`` for backbone, neck and heads (issues 10 and 11.4)."""
import os.path as osp

import torch
import torch.nn as nn
from mmengine.config import Config

import mmsnn  # noqa: F401  (registers the mmsnn modules)
from mmsnn.models import MetaSDT
from mmsnn.models.necks import SpikingFPN

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(embed_dims=(8, 16, 32, 48), mixer='srb', out_indices=(1, 2, 3, 4))


def _norm_types(model):
    return {type(m).__name__ for m in model.modules()
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))}


def test_backbone_norm_cfg_replaces_every_batchnorm():
    plain = MetaSDT(**TINY)
    assert _norm_types(plain) == {'BatchNorm1d', 'BatchNorm2d'}
    sync = MetaSDT(**TINY, norm_cfg=dict(type='SyncBN'))
    assert _norm_types(sync) == {'SyncBatchNorm'}
    assert set(sync.state_dict()) == set(plain.state_dict())  # same keys: checkpoints load
    gn = MetaSDT(**TINY, norm_cfg=dict(type='GN', num_groups=4)).eval()
    assert _norm_types(gn) == {'GroupNorm'}
    taps = gn(torch.randn(2, 3, 32, 32))
    assert [t.shape[1] for t in taps] == [8, 16, 32, 48]
    frozen = MetaSDT(**TINY, norm_cfg=dict(type='BN', requires_grad=False))
    assert not any(p.requires_grad for m in frozen.modules()
                   if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters())


def test_neck_norm_cfg():
    neck = SpikingFPN([8, 16], 8, num_outs=2, norm_cfg=dict(type='GN', num_groups=2))
    assert _norm_types(neck) == {'GroupNorm'}
    assert {n.split('.')[-2] for n, _ in neck.named_parameters()} == {'conv', 'bn'}


def test_seg_config_has_one_norm_for_every_part():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'seg', 'sdt_s_ade20k.py'))
    for part in ('backbone', 'neck', 'decode_head'):
        norm = cfg.model[part].norm_cfg
        assert (norm.type, norm.requires_grad) == ('BN', True), part
