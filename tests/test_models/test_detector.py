"""COCO detection: spiking Mask R-CNN parts, configs, the demo dataset and demo training.

Everything runs on tiny inputs (a few 128 px images, the demo's narrow model) and one thread.
"""
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmsnn  # noqa: F401  (registers the mmsnn modules)
from mmsnn.datasets import demo_metainfo, generate_demo_coco, set_data_root

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the Meta-SDT configs (the spiking transformers' are in test_snn_transformer_configs.py)
DET_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'det', 'sdt_*.py')))
DEMO_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'det', 'demo', 'sdt_*.py')))
DEMO = osp.join(REPO, 'configs', 'det', 'demo', 'sdt_srb_s_demo.py')
SRB_S = osp.join(REPO, 'configs', 'det', 'sdt_srb_s_coco.py')
STOCK_1X = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
STOCK_MS_CROP = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
FEAT_STRIDES = [4, 8, 16, 16]
ANCHOR_STRIDES = [4, 8, 16, 16, 32]


def _plain(cfg):
    """A config section as plain python without mmengine's ``_scope_`` annotations."""
    if hasattr(cfg, 'to_dict'):
        cfg = cfg.to_dict()
    if isinstance(cfg, dict):
        return {k: _plain(v) for k, v in cfg.items() if k != '_scope_'}
    if isinstance(cfg, (list, tuple)):
        return [_plain(v) for v in cfg]
    return cfg


def _build(cfg_or_path, **backbone):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(cfg_or_path) if isinstance(cfg_or_path, str) else cfg_or_path
    init_default_scope('mmdet')
    model_cfg = cfg.model.copy()
    model_cfg.backbone.update(backbone)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def stock():
    from mmengine.hub import get_config  # Config.fromfile of an installed package's config
    return get_config(STOCK_1X), get_config(STOCK_MS_CROP)


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """A tiny demo COCO dataset: 8 train and 4 val images of 128 px."""
    root = str(tmp_path_factory.mktemp('demo_coco'))
    generate_demo_coco(root, num_train=8, num_val=4, image_size=(128, 128), seed=1)
    return root + '/'


def _demo_cfg(data_root):
    cfg = Config.fromfile(DEMO)
    return set_data_root(cfg, data_root)


def _demo_batch(model, data_root, n=4, training=True):
    from mmengine.runner import Runner
    cfg = _demo_cfg(data_root)
    loader_cfg = (cfg.train_dataloader if training else cfg.val_dataloader).copy()
    loader_cfg.batch_size = n
    loader_cfg.sampler = dict(type='DefaultSampler', shuffle=False)
    loader_cfg.pop('batch_sampler', None)
    init_default_scope('mmdet')
    data = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
    return model.data_preprocessor(data, training)


# ------------------------------------------------------------------------------ configs

@pytest.mark.parametrize('path', DET_CONFIGS + DEMO_CONFIGS,
                         ids=lambda p: osp.relpath(p, osp.join(REPO, 'configs', 'det')))
@pytest.mark.slow
def test_config_builds_with_real_strides(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmsnn'], allow_failed_imports=False)
    model = _build(cfg)
    assert type(model).__name__ == 'MaskRCNN'
    assert type(model.backbone).__name__ == 'MetaSDT'
    assert model.rpn_head.prior_generator.strides == [(s, s) for s in ANCHOR_STRIDES]
    for extractor in (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor):
        assert extractor.featmap_strides == FEAT_STRIDES
    assert list(model.backbone.out_strides) == FEAT_STRIDES
    assert list(model.neck.in_channels) == list(model.backbone.out_channels)
    spiking = 'stockheads' not in path
    names = (type(model.neck).__name__, type(model.rpn_head).__name__,
             type(model.roi_head).__name__, type(model.roi_head.bbox_head).__name__,
             type(model.roi_head.mask_head).__name__)
    assert names == (('SpikingFPN', 'SpikingRPNHead', 'SpikingRoIHead',
                      'SpikingShared2FCBBoxHead', 'SpikingFCNMaskHead') if spiking else
                     ('FPN', 'RPNHead', 'StandardRoIHead', 'Shared2FCBBoxHead', 'FCNMaskHead'))


@pytest.mark.parametrize('path', DET_CONFIGS, ids=osp.basename)
def test_coco_config_inherits_stock_pipelines_and_schedule(path, stock):
    stock_1x, stock_crop = stock
    cfg = Config.fromfile(path)
    # the DETR-style multi-scale crop augmentation (with masks), exactly as mmdet defines it
    train_pipe = _plain(cfg.train_dataloader.dataset.pipeline)
    assert train_pipe == _plain(stock_crop.train_dataloader.dataset.pipeline)
    assert any(t['type'] == 'RandomChoice' for t in train_pipe)
    assert {'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True} in train_pipe
    for split in ('val', 'test'):
        assert (_plain(cfg[f'{split}_dataloader'].dataset.pipeline)
                == _plain(stock_1x[f'{split}_dataloader'].dataset.pipeline))
    # stock Mask R-CNN training / testing settings
    assert _plain(cfg.model.train_cfg) == _plain(stock_1x.model.train_cfg)
    assert _plain(cfg.model.test_cfg) == _plain(stock_1x.model.test_cfg)
    # the reference's optimiser and 1x schedule, batch 16 = 4 x 4
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'paramwise_cfg' not in cfg.optim_wrapper
    assert _plain(cfg.optim_wrapper.optimizer) == dict(
        type='AdamW', lr=2e-4, betas=[0.9, 0.999], weight_decay=0.05)
    assert cfg.train_cfg.max_epochs == 12
    warmup, steps = _plain(cfg.param_scheduler)
    assert warmup['type'] == 'LinearLR' and warmup['end'] == 1000 and not warmup['by_epoch']
    assert steps['type'] == 'MultiStepLR' and steps['milestones'] == [8, 11]
    assert cfg.train_dataloader.batch_size == 4
    assert _plain(cfg.auto_scale_lr) == dict(enable=False, base_batch_size=16)
    assert cfg.data_root == 'data/coco/'
    assert cfg.pretrained is None and cfg.model.backbone.init_cfg is None
    arch = 'l' if '_l_' in osp.basename(path) else 's'
    assert cfg.model.backbone.arch == arch
    mixer = ('srb' if 'srb' in path else 'mlpixer' if 'mlpixer' in path else 'conv')
    assert cfg.model.backbone.mixer == mixer


@pytest.mark.slow
def test_pretrained_variable_sets_backbone_init(tmp_path):
    """Setting ``pretrained`` at the top of a config gives the backbone a Pretrained init."""
    text = open(SRB_S).read()
    assert 'pretrained = None' in text
    text = text.replace('pretrained = None', "pretrained = 'ckpt/meta_sdt_s_srb.pth'")
    text = text.replace("'./_base_/", repr(osp.join(REPO, 'configs', 'det', '_base_'))[:-1] + '/')
    edited = tmp_path / 'sdt_srb_s_coco_pretrained.py'
    edited.write_text(text)
    cfg = Config.fromfile(str(edited))
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained',
                                               checkpoint='ckpt/meta_sdt_s_srb.pth')
    # the README's child-config recipe
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = '{SRB_S}'\n"
                     "model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
                     "checkpoint='x.pth')))\n")
    assert Config.fromfile(str(child)).model.backbone.init_cfg == dict(type='Pretrained',
                                                                       checkpoint='x.pth')

    # and the backbone really loads it when the detector is initialised
    cfg = Config.fromfile(DEMO)
    donor = _build(cfg).backbone
    ckpt = tmp_path / 'backbone.pth'
    torch.save(donor.state_dict(), str(ckpt))
    model = _build(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    for k, v in donor.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_data_root_from_cfg_options(tmp_path, demo_data):
    from mmsnn.utils.config import load_config
    root = str(tmp_path / 'elsewhere') + '/'
    for path in (SRB_S, DEMO):
        cfg = load_config(path, {'data_root': root})  # what tools/{train,test}.py do
        for split in ('train', 'val', 'test'):
            assert cfg[f'{split}_dataloader'].dataset.data_root == root
        for split in ('val', 'test'):
            assert cfg[f'{split}_evaluator'].ann_file == (
                root + 'annotations/instances_val2017.json')
    # the re-pointed demo config really reads the other dataset
    from mmdet.registry import DATASETS
    cfg = set_data_root(Config.fromfile(DEMO), demo_data)
    init_default_scope('mmdet')
    assert len(DATASETS.build(cfg.train_dataloader.dataset)) == 8
    assert len(DATASETS.build(cfg.test_dataloader.dataset)) == 4


# ------------------------------------------------------------------------- demo dataset

def test_demo_dataset_is_deterministic_and_valid(tmp_path, demo_data):
    a = generate_demo_coco(str(tmp_path / 'a'), num_train=3, num_val=2, image_size=(64, 80),
                           num_classes=4, seed=3)
    b = generate_demo_coco(str(tmp_path / 'b'), num_train=3, num_val=2, image_size=(64, 80),
                           num_classes=4, seed=3)
    for split in ('train', 'val'):
        assert open(a[split]).read() == open(b[split]).read()
    for f in glob.glob(str(tmp_path / 'a' / '*2017' / '*.png')):
        twin = f.replace(str(tmp_path / 'a'), str(tmp_path / 'b'))
        assert open(f, 'rb').read() == open(twin, 'rb').read()
    coco = json.load(open(a['train']))
    assert [c['name'] for c in coco['categories']] == list(demo_metainfo(4)['classes'])
    assert len(coco['images']) == 3 and coco['annotations']
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        poly = np.array(ann['segmentation'][0]).reshape(-1, 2)
        assert poly[:, 0].min() == x and poly[:, 1].min() == y
        assert poly[:, 0].max() == x + w - 1 and poly[:, 1].max() == y + h - 1
        assert 0 < ann['area'] <= w * h and ann['iscrowd'] == 0
    with pytest.raises(ValueError):
        generate_demo_coco(str(tmp_path / 'c'), num_classes=99)

    # mmdet's stock CocoDataset reads it, masks included
    from mmdet.registry import DATASETS
    cfg = _demo_cfg(demo_data)
    init_default_scope('mmdet')
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    sample = ds[0]['data_samples']
    assert ds.metainfo['classes'] == ('circle', 'rectangle', 'triangle')
    assert len(sample.gt_instances) >= 1
    assert sample.gt_instances.masks.to_ndarray().sum() > 0


# ------------------------------------------------------------------------------- model

def test_feature_strides_match_anchor_and_roi_strides():
    for path in (SRB_S, DEMO):
        model = _build(path).eval()
        H, W = 128, 192
        with torch.no_grad():
            feats = model.extract_feat(torch.randn(1, 3, H, W))
        strides = [(H // f.shape[-2], W // f.shape[-1]) for f in feats]
        assert [s for s, _ in strides] == [s for _, s in strides]
        strides = [s for s, _ in strides]
        assert strides == [s[0] for s in model.rpn_head.prior_generator.strides]
        assert strides[:4] == model.roi_head.bbox_roi_extractor.featmap_strides
        assert strides[:4] == model.roi_head.mask_roi_extractor.featmap_strides
        assert strides == ANCHOR_STRIDES


def _head_outputs(model, inputs, rois):
    feats = model.extract_feat(inputs)
    cls, reg = model.rpn_head(feats)
    bbox = model.roi_head._bbox_forward(feats, rois)
    mask = model.roi_head._mask_forward(feats, rois)
    return list(feats) + list(cls) + list(reg) + [bbox['cls_score'], bbox['bbox_pred'],
                                                    mask['mask_preds']]


def test_quantiser_same_in_train_and_eval_and_feeds_every_layer(demo_data):
    model = _build(DEMO)
    inputs = torch.randn(2, 3, 128, 128)
    rois = torch.tensor([[0, 10., 12., 60., 70.], [1, 30., 5., 120., 90.],
                         [1, 0., 0., 127., 127.]])
    # every conv / linear of neck and heads reads integer spike counts 0..4
    seen = []

    def check(module, args):
        x = args[0]
        seen.append(module)
        assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= 4, module

    layers = [m for part in (model.neck, model.rpn_head, model.roi_head) for m in part.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d))]
    handles = [m.register_forward_pre_hook(check) for m in layers]
    # train mode, BN frozen to running stats: the only train/eval difference left would be
    # the quantiser's
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    with torch.no_grad():
        train_out = _head_outputs(model, inputs, rois)
    assert set(seen) == set(layers)
    model.eval()
    with torch.no_grad():
        eval_out = _head_outputs(model, inputs, rois)
    for h in handles:
        h.remove()
    for a, b in zip(train_out, eval_out):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_time_axis_is_averaged_like_a_single_step(demo_data):
    """Stateless quantiser + keep_time=True repeats the features over T = 4; the heads fold
    T and average the logits, so the detections equal those of the 4-D model."""
    model = _build(DEMO)
    timed = _build(DEMO, T=4, keep_time=True)
    timed.load_state_dict(model.state_dict())
    model.eval()
    timed.eval()
    data = _demo_batch(model, demo_data, n=2, training=False)
    with torch.no_grad():
        feats = timed.extract_feat(data['inputs'])
        assert all(f.dim() == 5 and f.shape[:2] == (4, 2) for f in feats)
        ref = model.predict(data['inputs'], data['data_samples'])
        out = timed.predict(data['inputs'], data['data_samples'])
    for r, o in zip(ref, out):
        r, o = r.pred_instances, o.pred_instances
        assert len(r) == len(o) > 0
        torch.testing.assert_close(o.scores, r.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(o.bboxes, r.bboxes, rtol=1e-4, atol=1e-3)
        assert (o.masks != r.masks).float().mean() < 1e-3


@pytest.mark.slow
def test_multistep_ilif_detector_trains_a_step(demo_data):
    from mmengine.optim import OptimWrapper
    model = _build(DEMO, T=4, neuron_cfg=dict(type='ILIF'), keep_time=True)
    model.train()
    data = _demo_batch(model, demo_data, n=2)
    feats = model.extract_feat(data['inputs'])
    assert all(f.dim() == 5 and f.shape[0] == 4 for f in feats)
    # the time steps differ (real membrane dynamics), so the average is not a copy
    assert not torch.equal(feats[0][0], feats[0][-1])
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    log_vars = model.train_step(
        {'inputs': list(data['inputs']), 'data_samples': data['data_samples']}, wrapper)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(log_vars)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(k.startswith('roi_head.mask_head.') for k in changed)


@pytest.mark.slow
def test_short_demo_training_lowers_the_loss(demo_data):
    model = _build(DEMO)
    model.train()
    data = _demo_batch(model, demo_data, n=4)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

    def loss_value(step):
        torch.manual_seed(0)  # the same RoI sampling each time
        loss, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
        if step:
            optim.zero_grad()
            loss.backward()
            optim.step()
        return loss.item()

    first = loss_value(step=True)
    for _ in range(3):
        loss_value(step=True)
    assert loss_value(step=False) < first


@pytest.mark.slow
@pytest.mark.parametrize('seed', [3, 4])
def test_demo_recipe_keeps_box_head_fcs_inside_the_quantiser_window(demo_data, seed):
    """The demo recipe at the regression test's lr (3e-3, no warm-up here: harsher) keeps the
    box head's first fc outputs inside the window [0, 4] where the next quantiser passes a
    gradient. With one lr for all (AdamW moves each of the fc's 3136 input weights by ~lr a
    step) they left it within a few steps (here 49-51% inside at init, 5-9% after 5 steps under
    either kernel family; with the fix about 50% throughout); in the full recipe no gradient
    reached either fc from iteration 27 on and seeds 3 and 4 learned nothing."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import set_random_seed
    cfg = _demo_cfg(demo_data)
    cfg.optim_wrapper.optimizer.lr = 3e-3
    set_random_seed(seed)
    model = _build(cfg)
    model.train()
    init_default_scope('mmdet')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = _demo_batch(model, demo_data, n=4)
    outputs = []
    hook = model.roi_head.bbox_head.shared_fcs[0].register_forward_hook(
        lambda mod, args, out: outputs.append(out.detach()))
    inside = []
    for _ in range(6):
        loss, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
        wrapper.update_params(loss)
        u = outputs.pop()
        inside.append(((u >= 0) & (u <= 4)).float().mean().item())
    hook.remove()
    assert inside[0] > 0.4, inside  # Xavier init: about half the outputs are positive
    assert min(inside) > 0.25, inside


# --------------------------------------------------------------------- train and test

# A seeded regression of the whole detection pipeline: 25 epochs (50 iterations) of the demo
# config on the 8 demo training images, then tools/test.py on the same images. The kernels
# alone move the result of so short a training: before the box head's lower lr (below) this
# test's seed 0 gave box / mask AP50 0.085 / 0.088 with AVX2 kernels, 0.023 / 0.030 with the
# AVX-512 ones of an AMD EPYC (tools/analysis/seed_sweep.py) and 0.005 on a Xeon with AMX
#; with it 0.270 / 0.272 (AVX2) and 0.264 / 0.309 (AVX-512). So
# training and testing run with the kernels pinned to the AVX2 family
# (conftest.PINNED_KERNELS), which every machine of this kind has: the same numbers
# everywhere. The thresholds still hold for the AVX-512 run (an untrained detector scores
# 0.002 / 0.005). Other seeds are not covered here: before
# the demo config gave the box head's fcs a tenth of the lr, two of 8 runs (native seeds 3
# and 4) learned nothing; with it all 10 runs of seeds 0-4 x both kernel families learned
# (box AP50 min 0.035, median 0.298; test_demo_recipe_keeps_box_head_fcs_inside_... above).
DET_EPOCHS = 25
DET_REGRESSION_AP50 = {'coco/bbox_mAP_50': 0.01, 'coco/segm_mAP_50': 0.015}


@pytest.fixture(scope='module')
def trained_demo(demo_data, tmp_path_factory, run_tool, pinned_kernel_env):
    """tools/train.py on the tiny demo dataset (25 epochs of 2 iterations), via
    --cfg-options data_root."""
    work = str(tmp_path_factory.mktemp('det_demo_work'))
    proc = run_tool('tools/train.py', DEMO, '--work-dir', work, '--cfg-options',
                    f'data_root={demo_data}', f'train_cfg.max_epochs={DET_EPOCHS}',
                    f'train_cfg.val_interval={10 * DET_EPOCHS}',
                    f'default_hooks.checkpoint.interval={DET_EPOCHS}',
                    'param_scheduler.0.end=4', f'param_scheduler.1.end={DET_EPOCHS}',
                    f'param_scheduler.1.milestones=[{DET_EPOCHS - 5}]',
                    'optim_wrapper.optimizer.lr=3e-3', timeout=600, env=pinned_kernel_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = osp.join(work, f'epoch_{DET_EPOCHS}.pth')
    assert osp.isfile(ckpt), proc.stdout[-2000:]
    return work, ckpt


def test_trained_demo_reaches_a_map_a_broken_head_would_miss(trained_demo, demo_data,
                                                              run_tool_each, tmp_path,
                                                              pinned_kernel_env):
    """...and the inference fast path (``--fuse-conv-bn``) gives the same mAP within 0.01."""
    work, ckpt = trained_demo
    runs = {}
    variants = (('plain', []), ('fused', ['--fuse-conv-bn']))
    # evaluated on the training images (the regression is about learning, not generalising);
    # low scores are kept so that COCO sees every detection. Both runs in one process, the
    # plain one first (it sees nothing the fused one changes)
    options = ['--cfg-options', f'data_root={demo_data}', 'model.test_cfg.rcnn.score_thr=0.0',
               'test_dataloader.dataset.ann_file=annotations/instances_train2017.json',
               'test_dataloader.dataset.data_prefix.img=train2017/',
               f'test_evaluator.ann_file={demo_data}annotations/instances_train2017.json']
    procs = run_tool_each([('tools/test.py', [DEMO, ckpt, *flag, '--work-dir', tmp_path / name,
                                              *options]) for name, flag in variants],
                          timeout=600, env=pinned_kernel_env)
    for (name, flag), proc in zip(variants, procs):
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ('BatchNorm layers folded' in proc.stdout) == bool(flag), proc.stdout[-2000:]
        runs[name] = json.load(open(tmp_path / name / 'metrics.json'))['metrics']
    metrics = runs['plain']
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP_50'):
        assert key in metrics and 0 <= metrics[key] <= 1, metrics
    for key, threshold in DET_REGRESSION_AP50.items():
        assert metrics[key] > threshold, metrics
    # float32: a folded BN rounds differently from conv + BN, which can move a spike whose
    # input lies next to a quantiser level, so the fused mAP may move a little (0.005 seen,
    # torch's fuse_conv_bn_weights); in float64 every spike is equal
    # (tests/test_deploy/test_convert_for_inference.py). The breakdowns (by object size, at
    # IoU 0.75) average over a few objects each, where one box crossing an IoU threshold
    # moves the AP by more (0.012 seen in bbox_mAP_s)
    assert runs['fused'].keys() == metrics.keys()
    headline = ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP_50')
    for key, value in metrics.items():
        bound = 0.01 if key in headline else 0.03
        assert abs(runs['fused'][key] - value) <= bound, (key, runs['fused'], metrics)
