"""Det / seg configs of Spikformer, SDT v1 and QKFormer: they only swap the backbone of the
Meta-SDT recipe, build with matching strides and channels, and their demo variants train a
few iterations on the generated data (in-process, one thread, tiny images)."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmsnn  # noqa: F401  (registers the mmsnn modules)
from mmsnn.datasets import generate_demo_ade, generate_demo_coco, set_data_root

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FAMILIES = {'spikformer': 'Spikformer', 'sdtv1': 'SDTv1', 'qkformer': 'QKFormer'}
# (config, the Meta-SDT config it must equal outside the backbone and the neck's widths)
PAIRS = []
for _name in FAMILIES:
    PAIRS += [(f'det/{_name}_coco.py', 'det/sdt_s_coco.py'),
              (f'det/demo/{_name}_demo.py', 'det/demo/sdt_srb_s_demo.py'),
              (f'seg/{_name}_ade20k.py', 'seg/sdt_s_ade20k.py'),
              (f'seg/demo/{_name}_demo.py', 'seg/demo/sdt_demo.py')]


def _cfg(rel):
    return Config.fromfile(osp.join(REPO, 'configs', rel))


def _without_backbone(cfg):
    d = copy.deepcopy(cfg.to_dict())
    d['model'].pop('backbone')
    d['model']['neck'].pop('in_channels')
    return d


def _build(cfg):
    from mmengine.registry import init_default_scope
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('path,metasdt', PAIRS, ids=[p for p, _ in PAIRS])
def test_config_only_swaps_the_backbone(path, metasdt):
    cfg, base = _cfg(path), _cfg(metasdt)
    family = osp.basename(path).split('_coco')[0].split('_ade20k')[0].split('_demo')[0]
    assert cfg.model.backbone.type == FAMILIES[family]
    assert _without_backbone(cfg) == _without_backbone(base)
    model = _build(cfg)
    backbone = model.backbone
    assert type(backbone).__name__ == FAMILIES[family] and backbone.T >= 2
    assert list(model.neck.in_channels) == list(backbone.out_channels)
    if path.startswith('det'):
        assert list(backbone.out_strides) == [4, 8, 16, 16]
        for ex in (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor):
            assert list(ex.featmap_strides) == list(backbone.out_strides)
    else:
        assert list(backbone.out_strides) == list(model.decode_head.feature_strides)
    if '/demo/' not in path:  # the published size, random init unless a checkpoint is set
        assert cfg.model.backbone.arch is not None and cfg.model.backbone.init_cfg is None


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo_coco'))
    generate_demo_coco(root, num_train=2, num_val=1, image_size=(96, 96), seed=1)
    return root + '/'


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo_ade'))
    generate_demo_ade(root, num_train=2, num_val=1, image_size=(64, 64))
    return root


def _train(cfg, work_dir):
    from mmengine.runner import Runner
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = 2
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 6)
    cfg.val_cfg = cfg.test_cfg = cfg.val_dataloader = cfg.test_dataloader = None
    cfg.val_evaluator = cfg.test_evaluator = None
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    before = {k: v.detach().clone() for k, v in runner.model.backbone.named_parameters()}
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    after = dict(runner.model.backbone.named_parameters())
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    return losses, changed, len(before)


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_det_demo_trains(family, coco_root, tmp_path):
    cfg = set_data_root(_cfg(f'det/demo/{family}_demo.py'), coco_root)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=10 ** 6)
    cfg.param_scheduler = None
    losses, changed, n = _train(cfg, tmp_path)
    assert len(losses) == 1 and torch.isfinite(torch.as_tensor(losses)).all()
    assert len(changed) > n // 2  # surrogate gradients reached most backbone parameters


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_seg_demo_trains(family, ade_root, tmp_path):
    cfg = _cfg(f'seg/demo/{family}_demo.py')
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = ade_root
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=10 ** 6)
    cfg.param_scheduler = None
    losses, changed, n = _train(cfg, tmp_path)
    assert len(losses) == 2 and torch.isfinite(torch.as_tensor(losses)).all()
    assert len(changed) > n // 2
