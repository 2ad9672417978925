"""Released reference detectors / segmentors run unchanged in mmsnn.

Every golden file in ``tests/data/goldens/reference_heads/`` (packed losslessly from the
reference's ``shared/golden/reference_heads``), and every file named in the environment
variable ``MMSNN_REFERENCE_GOLDENS`` (``os.pathsep``-separated, same layout, ``.pt`` or
packed), holds a reference model's constructor arguments, its weights in the reference's key
layout and the reference's outputs on one image (float64, eval). Each test id
is ``<file name>-<output kind>``. The mmsnn model is built from the shipped reference config
of the file's mixer (``configs/{det,seg}/reference``) with the file's widths, loaded through
the one converter (strictly), and must reproduce every stored output to 1e-6; the clean
config of the same size and mixer must not (so the reference switches are shown to matter).
"""
import argparse
import glob
import os
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmsnn  # noqa: F401  (registers the mmsnn modules)
from mmsnn.models import convert_reference_checkpoint
from mmsnn.models.reference_conversion import reference_backbone_cfg
from golden_files import golden_files, golden_name, golden_path, read_golden

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-6
DET_KINDS = ('backbone', 'neck', 'rpn', 'proposals', 'roi_features', 'bbox_head', 'mask_head',
             'predict', 'clean_config_differs')
SEG_KINDS = ('backbone', 'neck', 'decode_head', 'seg_logits', 'clean_config_differs')


def _golden_files():
    files = [str(p) for p in golden_files('reference_heads', 'MMSNN_REFERENCE_GOLDENS')]
    assert files, 'no reference goldens in tests/data/goldens/reference_heads'
    return files


def _load(path):
    return read_golden(path)


def _task(g):
    return 'det' if g['config']['model']['type'] == 'MaskRCNN' else 'seg'


def _cases():
    cases = []
    for path in _golden_files():
        kinds = DET_KINDS if _task(_load(path)) == 'det' else SEG_KINDS
        cases += [pytest.param(path, kind, id=f'{golden_name(path)}-{kind}') for kind in kinds]
    return cases


# ------------------------------------------------------------------ building the models
def _config_path(g, clean=False):
    """The shipped config of the file's mixer (s size: the widths are set from the file)."""
    mixer = reference_backbone_cfg(g['config']['model']['backbone'])['mixer']
    task = _task(g)
    name = ('sdt_s' if mixer == 'conv' else f'sdt_{mixer}_s') + (
        '_coco.py' if task == 'det' else '_ade20k.py')
    return str(REPO / 'configs' / task / ('' if clean else 'reference') / name)


def _model_cfg(g, clean=False):
    """The shipped config's model with the widths (and test settings) of the golden file."""
    ref = g['config']['model']
    cfg = Config.fromfile(_config_path(g, clean))
    m = cfg.model
    bb = reference_backbone_cfg(ref['backbone'])
    assert m.backbone.type == bb.pop('type') and m.backbone.mixer == bb.pop('mixer')
    m.backbone.update(bb, init_cfg=None)
    m.neck.update(in_channels=ref['neck']['in_channels'],
                  out_channels=ref['neck']['out_channels'], num_outs=ref['neck']['num_outs'])
    if _task(g) == 'det':
        rpn, roi = ref['rpn_head'], ref['roi_head']
        m.rpn_head.update(in_channels=rpn['in_channels'], feat_channels=rpn['feat_channels'])
        m.roi_head.bbox_roi_extractor.out_channels = roi['bbox_roi_extractor']['out_channels']
        m.roi_head.mask_roi_extractor.out_channels = roi['mask_roi_extractor']['out_channels']
        bh, mh = roi['bbox_head'], roi['mask_head']
        m.roi_head.bbox_head.update(in_channels=bh['in_channels'], num_classes=bh['num_classes'],
                                    fc_out_channels=bh['fc_out_channels'])
        m.roi_head.mask_head.update(in_channels=mh['in_channels'], num_classes=mh['num_classes'],
                                    conv_out_channels=mh['conv_out_channels'],
                                    num_convs=mh['num_convs'])
        m.test_cfg = Config(dict(g['config']['test_cfg']))._cfg_dict
    else:
        dh = ref['decode_head']
        m.decode_head.update(in_channels=dh['in_channels'], channels=dh['channels'],
                             num_classes=dh['num_classes'])
    m.pop('pretrained', None)
    return cfg


def _build(g, clean=False):
    from mmengine.registry import MODELS
    cfg = _model_cfg(g, clean)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model).double().eval()
    sd = convert_reference_checkpoint(g['state_dict'], task=_task(g))
    if clean:  # the clean units have other parameters: load what fits
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in sd.items()
                               if k in own and own[k].shape == v.shape}, strict=False)
    else:
        model.load_state_dict(sd, strict=True)  # every key maps, none is left over
    return model


_MODELS = {}


def _model(path, clean=False):
    key = (path, clean)
    if key not in _MODELS:
        _MODELS[key] = _build(_load(path), clean)
    return _MODELS[key]


@pytest.fixture
def float32_ops(monkeypatch):
    """mmcv's CPU NMS and mmdet's mask pasting (``grid_sample`` with a float32 grid) take
    float32 only: run them on float32 copies and keep the float64 boxes / scores, as the
    goldens were made."""
    import importlib
    nms_module = importlib.import_module('mmcv.ops.nms')
    paste_module = importlib.import_module('mmdet.models.roi_heads.mask_heads.fcn_mask_head')
    nms, paste = nms_module.NMSop.apply, paste_module._do_paste_mask

    def nms_float32(boxes, scores, *args):
        return nms(boxes.float(), scores.float(), *args)

    def paste_float32(masks, boxes, *args, **kwargs):
        return paste(masks.float(), boxes.float(), *args, **kwargs)

    monkeypatch.setattr(nms_module.NMSop, 'apply', nms_float32)
    monkeypatch.setattr(paste_module, '_do_paste_mask', paste_float32)


def _close(actual, expected, what, atol=ATOL):
    expected = expected.to(actual.dtype)
    assert actual.shape == expected.shape, f'{what}: shape {actual.shape} vs {expected.shape}'
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert err <= atol, f'{what}: max abs error {err:.3g} > {atol}'


def _levels(x):
    return torch.round(torch.clamp(x, 0, 4)).to(torch.uint8)


def _det_sample(g):
    from mmdet.structures import DetDataSample
    return DetDataSample(metainfo=dict(g['img_meta']))


# ----------------------------------------------------------------------------- parity
@pytest.mark.slow
@pytest.mark.parametrize('path,kind', _cases())
def test_reference_outputs(path, kind, float32_ops):
    g = _load(path)
    if kind == 'clean_config_differs':
        return _check_clean_differs(g, _model(path, clean=True))
    model = _model(path)
    image = g['image'].double()
    with torch.no_grad():
        if _task(g) == 'det':
            _check_det(g, model, image, kind)
        else:
            _check_seg(g, model, image, kind)


def _check_det(g, model, image, kind):
    neck_outs = tuple(n.double() for n in g['neck_outs'])  # what the reference's heads saw
    if kind == 'backbone':
        for i, (a, b) in enumerate(zip(model.backbone(image), g['backbone_taps'])):
            _close(a, b, f'backbone tap {i}')
    elif kind == 'neck':
        outs = model.neck(model.backbone(image))
        assert len(outs) == len(g['neck_outs'])
        for i, (a, b) in enumerate(zip(outs, neck_outs)):
            _close(a, b, f'neck output {i}')  # stored in float32: 1e-6 covers the rounding
    elif kind == 'rpn':
        cls, reg = model.rpn_head(neck_outs)
        for i in range(len(cls)):
            _close(cls[i], g['rpn_cls'][i], f'rpn_cls level {i}')
            _close(reg[i], g['rpn_reg'][i], f'rpn_reg level {i}')
    elif kind == 'proposals':
        assert [s[0] for s in model.rpn_head.prior_generator.strides] == \
            g['config']['anchor_strides']
        cls, reg = model.rpn_head(neck_outs)
        props = model.rpn_head.predict_by_feat(
            cls, reg, batch_img_metas=[dict(g['img_meta'])], cfg=model.test_cfg.rpn,
            rescale=False)[0]
        _close(props.bboxes, g['rpn_proposals']['bboxes'], 'proposal boxes')
        _close(props.scores, g['rpn_proposals']['scores'], 'proposal scores')
    elif kind == 'roi_features':
        roi = model.roi_head
        assert roi.bbox_roi_extractor.featmap_strides == g['config']['roi_featmap_strides']
        levels = roi.bbox_roi_extractor.map_roi_levels(g['rois'], 4)
        assert torch.equal(levels, g['roi_levels'])
        feats = roi.bbox_roi_extractor(neck_outs[:4], g['rois'])
        _close(feats, g['bbox_feats'], 'bbox RoI features')
        mask_feats = roi.mask_roi_extractor(neck_outs[:4], g['mask_rois'])
        # the mask head's first quantiser reads them: compare its integer levels
        assert torch.equal(_levels(mask_feats), g['mask_feat_levels'])
    elif kind == 'bbox_head':
        cls_score, bbox_pred = model.roi_head.bbox_head(g['bbox_feats'])
        _close(cls_score, g['cls_score'], 'cls_score')
        _close(bbox_pred, g['bbox_pred'], 'bbox_pred')
    elif kind == 'mask_head':
        head = model.roi_head.mask_head
        seen = []
        hook = head.conv_logits.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
        preds = head(g['mask_feat_levels'].double())
        hook.remove()
        assert list(preds.shape) == list(g['mask_preds_shape'])
        assert torch.equal(seen[0].to(torch.uint8), g['mask_logit_levels'])
        _close(preds[..., ::4, ::4], g['mask_preds_s4'], 'mask logits')
    elif kind == 'predict':
        res = model.predict(image, [_det_sample(g)], rescale=True)[0].pred_instances
        ref = g['predict']
        assert len(res) == len(ref['labels'])
        assert torch.equal(res.labels, ref['labels'])
        _close(res.bboxes, ref['bboxes'], 'predicted boxes')
        _close(res.scores, ref['scores'], 'predicted scores')
        W = ref['masks_shape'][-1]
        masks = np.unpackbits(ref['masks_packed'].numpy(), axis=-1, count=W).astype(bool)
        assert np.array_equal(res.masks.numpy(), masks), \
            f'{int((res.masks.numpy() != masks).sum())} mask pixels differ'
    else:
        raise AssertionError(kind)


def _check_seg(g, model, image, kind):
    if kind == 'backbone':
        for i, (a, b) in enumerate(zip(model.backbone(image), g['backbone_taps'])):
            _close(a, b, f'backbone tap {i}')
    elif kind == 'neck':
        outs = model.neck(model.backbone(image))
        for i, out in enumerate(outs):
            assert list(out.shape) == list(g['neck_outs_shapes'][i])
            _close(out[..., ::4, ::4], g['neck_outs_s4'][i], f'neck output {i}')
            assert torch.equal(_levels(out), g['neck_out_levels'][i]), f'neck levels {i}'
    elif kind == 'decode_head':
        head = model.decode_head
        seen = []
        hook = head.conv_seg.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
        logits = head([lv.double() for lv in g['neck_out_levels']])
        hook.remove()
        assert list(logits.shape) == list(g['decode_logits_shape'])
        assert torch.equal(seen[0].to(torch.uint8), g['decode_logit_levels'])
        _close(logits[..., ::4, ::4], g['decode_logits_s4'], 'decode logits')
    elif kind == 'seg_logits':
        logits = model.encode_decode(image, [dict(g['img_meta'])])
        assert list(logits.shape) == list(g['seg_logits_shape'])
        _close(logits[..., ::8, ::8], g['seg_logits_s8'], 'segmentation logits')
        assert torch.equal(logits.argmax(1).to(torch.uint8), g['seg_logits_argmax'])
    else:
        raise AssertionError(kind)


def _check_clean_differs(g, clean):
    """With the clean config (mmsnn's defaults) the same weights compute something else."""
    image = g['image'].double()
    with torch.no_grad():
        outs = clean.neck(clean.backbone(image))
        if _task(g) == 'det':
            neck_err = max((a - b.double()).abs().max().item()
                           for a, b in zip(outs, g['neck_outs']))
            cls_score, _ = clean.roi_head.bbox_head(g['bbox_feats'])
            cls_err = (cls_score - g['cls_score']).abs().max().item()
            feats = clean.roi_head.bbox_roi_extractor(
                tuple(n.double() for n in g['neck_outs'][:4]), g['rois'])
            roi_err = (feats - g['bbox_feats']).abs().max().item()
            assert min(neck_err, cls_err, roi_err) > 1e-2, (neck_err, cls_err, roi_err)
        else:
            neck_err = max((a[..., ::4, ::4] - b).abs().max().item()
                           for a, b in zip(outs, g['neck_outs_s4']))
            logits = clean.encode_decode(image, [dict(g['img_meta'])])
            seg_err = (logits[..., ::8, ::8] - g['seg_logits_s8']).abs().max().item()
            assert min(neck_err, seg_err) > 1e-2, (neck_err, seg_err)


# ----------------------------------------------------------------------- reading files
def _det_golden():
    path = str(golden_path('reference_heads/det_golden'))
    return path, _load(path)


class _Foreign:
    """A class nobody allow-listed."""


class _Shell:
    def __reduce__(self):
        return os.system, ('echo pwned',)


def _reference_file(path, g, **extra):
    """A checkpoint written the way the reference's training script writes one: DDP keys,
    the argparse namespace and numpy scalars next to the weights."""
    args = argparse.Namespace(lr=np.float64(2e-4), epochs=12, arch='sr_s_fpn_1x_coco',
                              seed=np.int64(0), gpu_ids=[0, 1, 2, 3])
    torch.save({'state_dict': {f'module.{k}': v for k, v in g['state_dict'].items()},
                'meta': dict(epoch=np.int64(12), mmdet_version='2.x'), 'args': args,
                'best_map': np.float32(0.1), **extra}, path)


def test_reference_file_with_args_namespace_loads(tmp_path):
    path, g = _det_golden()
    src = tmp_path / 'released.pth'
    _reference_file(src, g)
    sd = convert_reference_checkpoint(str(src), task='det')
    model = _model(path)
    assert set(sd) == set(model.state_dict())
    model_cfg = _model_cfg(g)
    init_default_scope('mmdet')
    from mmengine.registry import MODELS
    fresh = MODELS.build(model_cfg.model)
    fresh.load_state_dict(sd, strict=True)
    assert torch.equal(fresh.neck.lateral_convs[0].conv.bias,
                       g['state_dict']['neck.lateral_convs.0.1.module.conv.bias'])
    assert torch.equal(fresh.rpn_head.rpn_conv[0].conv.weight,
                       g['state_dict']['rpn_head.rpn_conv.1.module.weight'])


@pytest.mark.parametrize('payload,name', [(_Foreign(), '_Foreign'), (_Shell(), 'system')])
def test_reference_file_with_other_globals_is_refused(tmp_path, payload, name):
    _, g = _det_golden()
    src = tmp_path / 'evil.pth'
    _reference_file(src, g, extra_object=payload)
    with pytest.raises(RuntimeError, match=rf'could not read checkpoint .*pickles \S*{name}, '
                                           'which is not allowed'):
        convert_reference_checkpoint(str(src), task='det')
    with open(src, 'rb'):  # the file is left as it was
        assert src.stat().st_size > 0


def test_tasks_are_checked(tmp_path):
    _, g = _det_golden()
    backbone_only = {k[9:]: v for k, v in g['state_dict'].items() if k.startswith('backbone.')}
    with pytest.raises(ValueError, match="task='backbone'"):
        convert_reference_checkpoint({'model': backbone_only}, task='det')
    with pytest.raises(ValueError, match='task must be one of'):
        convert_reference_checkpoint(backbone_only, task='detection')
    # the backbone part of a whole detector, as MetaSDT's init_cfg loads it
    sd = convert_reference_checkpoint({'state_dict': g['state_dict']}, task='backbone')
    assert set(sd) == set(backbone_only)


# ------------------------------------------------------------- the command line, end to end
_DEMO_CLASSES = ('circle', 'rectangle', 'triangle')


def _three_classes(sd):
    """The golden detector cut to the demo's 3 classes (+ background, last in fc_cls)."""
    sd = dict(sd)
    keep = [0, 1, 2, sd['roi_head.bbox_head.fc_cls.weight'].shape[0] - 1]
    for p in ('weight', 'bias'):
        sd[f'roi_head.bbox_head.fc_cls.{p}'] = sd[f'roi_head.bbox_head.fc_cls.{p}'][keep]
        sd[f'roi_head.bbox_head.fc_reg.{p}'] = sd[f'roi_head.bbox_head.fc_reg.{p}'][:12]
        key = f'roi_head.mask_head.conv_logits.1.module.{p}'
        sd[key] = sd[key][:3]
    return sd


def test_convert_then_evaluate_with_reference_config(tmp_path, run_tool_each):
    from mmsnn.datasets import generate_demo_coco
    _, g = _det_golden()
    data = tmp_path / 'demo_coco'
    generate_demo_coco(str(data), num_train=1, num_val=2, image_size=(128, 128), seed=3)
    src = tmp_path / 'released.pth'
    _reference_file(src, dict(g, state_dict=_three_classes(g['state_dict'])))

    ref = g['config']['model']
    config = tmp_path / 'reference_demo.py'
    config.write_text(f'''
_base_ = {str(REPO / 'configs/det/reference/sdt_srb_s_coco.py')!r}
data_root = {str(data) + '/'!r}
metainfo = dict(classes={_DEMO_CLASSES!r})
model = dict(
    backbone=dict(embed_dims={tuple(ref['backbone']['embed_dim'])!r}),
    neck=dict(in_channels={ref['neck']['in_channels']!r}, out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=128, num_classes=3),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=3)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(metainfo=metainfo, pipeline=test_pipeline))
val_dataloader = test_dataloader
''')
    dst = tmp_path / 'converted.pth'
    # the conversion, then tools/test.py on its output: one process, in that order
    proc, tested = run_tool_each(
        [('tools/convert_reference.py', [src, dst, '--task', 'det', '--config', config]),
         ('tools/test.py', [config, dst, '--work-dir', tmp_path / 'work',
                            '--cfg-options', f'data_root={data}/'])], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'all {len(g["state_dict"])} keys match the model' in proc.stdout, proc.stdout
    converted = torch.load(dst, weights_only=True)
    assert torch.equal(converted['state_dict']['neck.fpn_convs.3.conv.weight'],
                       g['state_dict']['neck.fpn_convs.3.1.module.conv.weight'])

    # a second conversion does not overwrite it (in-process: no second interpreter start)
    from mmsnn.cli import convert_reference as cli
    before = dst.stat().st_mtime_ns
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(src), str(dst), '--task', 'det'])
    assert exit_info.value.code == 2 and dst.stat().st_mtime_ns == before

    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    assert 'coco/bbox_mAP' in tested.stdout and 'coco/segm_mAP' in tested.stdout


# ------------------------------------------------------------------------ the options
def test_eval_only_clip_is_an_option_of_the_quantiser():
    from mmsnn.models.neurons import build_neuron
    q = build_neuron(dict(type='MultiSpike', max_value=4, norm=1.0, eval_max_value=1))
    x = torch.tensor([-1.0, 0.4, 0.6, 1.7, 2.5, 3.6, 9.0], requires_grad=True)
    assert q.train()(x).tolist() == [0, 0, 1, 2, 2, 4, 4]
    assert q.eval()(x).tolist() == [0, 0, 1, 1, 1, 1, 1]
    plain = build_neuron(dict(type='MultiSpike', max_value=4, norm=1.0)).eval()
    assert plain(x).tolist() == [0, 0, 1, 2, 2, 4, 4]  # the default: the same in both modes


@pytest.mark.parametrize('prefix', [None, 'backbone.'])
def test_backbone_init_cfg_takes_a_released_detector(tmp_path, prefix):
    """``init_cfg=dict(type='Pretrained')`` of a backbone is mmengine's ``PretrainedInit``
    going through the one converter: a whole released detector (DDP keys, args namespace)
    gives the backbone its weights, with or without ``prefix``."""
    from mmengine.model.weight_init import PretrainedInit

    from mmsnn.models import MetaSDT
    from mmsnn.models.reference_conversion import ConvertedPretrainedInit
    assert issubclass(ConvertedPretrainedInit, PretrainedInit)
    _, g = _det_golden()
    src = tmp_path / 'released.pth'
    _reference_file(src, g)
    cfg = reference_backbone_cfg(g['config']['model']['backbone'])
    cfg.pop('type')
    init_cfg = dict(type='Pretrained', checkpoint=str(src))
    if prefix:
        init_cfg['prefix'] = prefix
    model = MetaSDT(**cfg, init_cfg=init_cfg)
    model.init_weights()
    own = model.state_dict()
    ref = {k[9:]: v for k, v in g['state_dict'].items() if k.startswith('backbone.')}
    assert set(own) == set(ref)
    assert all(torch.equal(own[k], ref[k]) for k in ref)


# -------------------------------------------------------------------- the configs
REFERENCE_CONFIGS = sorted(glob.glob(str(REPO / 'configs' / '*' / 'reference' / 'sdt_*.py')))


def test_a_reference_config_per_released_size_and_mixer():
    names = {osp.relpath(p, REPO / 'configs') for p in REFERENCE_CONFIGS}
    for task, suffix in (('det', 'coco'), ('seg', 'ade20k')):
        for size in ('s', 'l'):
            for mixer in ('', 'mlpixer_', 'srb_'):
                assert f'{task}/reference/sdt_{mixer}{size}_{suffix}.py' in names


@pytest.mark.parametrize('path', REFERENCE_CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_reference_config_is_the_clean_one_plus_the_reference_switches(path):
    ref = Config.fromfile(path)
    clean = Config.fromfile(path.replace(f'{os.sep}reference', ''))
    r, c = ref.model, clean.model
    assert (r.backbone.arch, r.backbone.mixer) == (c.backbone.arch, c.backbone.mixer)
    assert r.neck.in_channels == c.neck.in_channels and r.neck.out_channels == c.neck.out_channels
    if '/det/' in path:
        assert r.rpn_head.anchor_generator.strides == [4, 8, 16, 32, 64]
        assert r.roi_head.bbox_roi_extractor.featmap_strides == [4, 8, 16, 32]
        assert r.roi_head.mask_roi_extractor.featmap_strides == [4, 8, 16, 32]
        assert r.neck.with_bn is False and r.neck.neuron_cfg.eval_max_value == 1
        assert r.rpn_head.with_bn is False and r.roi_head.mask_head.with_bn is False
        assert r.roi_head.bbox_head.spike_before_predictors is False
        assert c.rpn_head.anchor_generator.strides == [4, 8, 16, 16, 32]  # the clean ones
    else:
        assert r.neck.conv_bias is True and 'conv_bias' not in c.neck
        assert r.decode_head.channels == c.decode_head.channels == \
            (256 if '_l_' in path else 128)


def test_an_unconverted_release_is_named_by_tools_test(tmp_path):
    """tools/test.py's checkpoint check points at the converter for a raw released file."""
    from mmsnn.utils.checkpoint_io import check_checkpoint_fits
    from mmsnn.utils.errors import MMSNNUserError
    path, g = _det_golden()
    src = tmp_path / 'released.pth'
    _reference_file(src, g)
    with pytest.raises(MMSNNUserError, match='tools/convert_reference.py SRC DST'):
        check_checkpoint_fits(_model(path), str(src), 'test')
