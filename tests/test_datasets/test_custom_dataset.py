"""The OpenMMLab way with a dataset that is not COCO-80: a 3-category COCO-format dataset
trained with the template config, the class-count check, tools/test.py's answer when
nothing is predicted, --out in mmdet's format, mmdet's / mmseg's own train.py, and the
inferencers on a real photo, a folder and a batch."""
import json
import os
import os.path as osp
import pickle
import shutil

import numpy as np
import pytest
from mmengine.config import Config

from mmsnn.datasets import generate_demo_coco
from mmsnn.utils.checkpoint_io import mmengine_checkpoint_globals
from mmsnn.utils.config import load_config
from mmsnn.utils.data_checks import check_num_classes
from mmsnn.utils.errors import MMSNNUserError
from tool_helpers import load_tool, tool_error

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECIPE = osp.join(REPO, 'configs', 'det', 'custom', 'sdt_srb_s_custom_coco.py')
CLASSES = ('screw', 'nut', 'bolt')
SMALL = ['train_dataloader.batch_size=2', 'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1']


def photo():
    import matplotlib
    return osp.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('train')


@pytest.fixture(scope='module')
def custom_coco(tmp_path_factory):
    """A COCO-format dataset in the template's layout whose 3 categories are named
    screw / nut / bolt (the demo generator's shapes, renamed): 4 train, 2 val images."""
    src = str(tmp_path_factory.mktemp('gen'))
    generate_demo_coco(src, num_train=4, num_val=2, image_size=(64, 64), seed=2)
    root = tmp_path_factory.mktemp('my_coco')
    (root / 'annotations').mkdir()
    for split in ('train', 'val'):
        shutil.copytree(osp.join(src, f'{split}2017'), root / 'images' / split)
        with open(osp.join(src, 'annotations', f'instances_{split}2017.json')) as f:
            ann = json.load(f)
        assert len(ann['categories']) == 3
        for cat, name in zip(ann['categories'], CLASSES):
            cat['name'] = name
        (root / 'annotations' / f'{split}.json').write_text(json.dumps(ann))
    return str(root) + '/'


@pytest.fixture(scope='module')
def trained_custom(custom_coco, tmp_path_factory, run_tool):
    work = tmp_path_factory.mktemp('custom_work')
    proc = run_tool('tools/train.py', RECIPE, '--work-dir', work, '--cfg-options',
                    f'data_root={custom_coco}', *SMALL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, work / 'epoch_1.pth'


def test_num_classes_check_names_the_keys(custom_coco, train_tool, capsys):
    # heads left at COCO's 80 classes: one line, before any work, naming both keys
    err = tool_error(train_tool, [RECIPE, '--work-dir', osp.join(custom_coco, 'wd'), '--cfg-options',
                           f'data_root={custom_coco}', 'model.roi_head.bbox_head.num_classes=80',
                           'model.roi_head.mask_head.num_classes=80'], capsys)
    assert 'the heads predict 80 classes' in err and "'screw', 'nut', 'bolt'" in err
    assert 'set model.roi_head.bbox_head.num_classes=3 model.roi_head.mask_head.num_classes=3' \
        in err
    assert not osp.exists(osp.join(custom_coco, 'wd'))
    # the annotation file's categories are not the dataset's classes (metainfo forgotten)
    cfg = load_config(RECIPE, {'data_root': custom_coco})
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.pop('metainfo')
    with pytest.raises(MMSNNUserError) as exc:
        check_num_classes(cfg, ['train'])
    msg = str(exc.value)
    assert "categories ('screw', 'nut', 'bolt') that are not classes of the dataset" in msg
    assert 'CocoDataset.METAINFO: 80 classes' in msg and 'metainfo=dict(classes=' in msg
    check_num_classes(load_config(RECIPE, {'data_root': custom_coco}))  # the template fits


@pytest.mark.slow
def test_every_shipped_config_passes_the_class_check():
    for folder in ('configs/det', 'configs/seg'):
        for dirpath, _, files in os.walk(osp.join(REPO, folder)):
            for name in files:
                if name.endswith('.py') and '_base_' not in dirpath:
                    check_num_classes(Config.fromfile(osp.join(dirpath, name)))


def test_template_trains_and_test_reports_empty_predictions(trained_custom, custom_coco,
                                                            run_tool, tmp_path):
    work, ckpt = trained_custom
    assert ckpt.is_file()
    # nothing can pass a threshold above 1: said in words, metrics reported as zeros
    proc = run_tool('tools/test.py', RECIPE, ckpt, '--work-dir', tmp_path / 'empty',
                    '--cfg-options', f'data_root={custom_coco}', 'model.test_cfg.rcnn.score_thr=1.01')
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert ('note: the model predicted no instance above the score threshold '
            '(model.test_cfg.rcnn.score_thr=1.01) on any of the 2 test images') in proc.stdout
    metrics = json.loads((tmp_path / 'empty' / 'metrics.json').read_text())['metrics']
    for kind in ('bbox', 'segm'):
        for key in ('mAP', 'mAP_50', 'mAP_75'):
            assert metrics[f'coco/{kind}_{key}'] == 0.0, metrics
    assert '  coco/bbox_mAP: 0.0' in proc.stdout


def test_out_stores_masks_rle_encoded(trained_custom, custom_coco, run_tool, tmp_path):
    """--out uses mmdet's DumpDetResults (masks as RLE, no ground truth)."""
    work, ckpt = trained_custom
    out = tmp_path / 'pred.pkl'
    proc = run_tool('tools/test.py', RECIPE, ckpt, '--work-dir', tmp_path / 'wd', '--out', out,
                    '--cfg-options', f'data_root={custom_coco}', 'model.test_cfg.rcnn.score_thr=0.0')
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2
    masks = [m for r in results for m in r['pred_instances']['masks']]
    assert masks, 'score_thr=0 keeps every prediction'
    assert all(isinstance(m, dict) and set(m) == {'size', 'counts'} for m in masks)
    assert all('gt_instances' not in r for r in results)


@pytest.mark.parametrize('toolbox', ['mmdet', 'mmseg'])
def test_toolbox_own_train_script_runs_an_mmsnn_config(toolbox, custom_coco, tmp_path,
                                                       run_tool):
    """The README's promise: mmdet's / mmseg's own tools/train.py (shipped in the package)
    trains an mmsnn config through custom_imports."""
    import importlib
    script = osp.join(osp.dirname(importlib.import_module(toolbox).__file__), '.mim', 'tools',
                      'train.py')
    assert osp.isfile(script), script
    if toolbox == 'mmdet':  # mmdet's script does not re-point the dataloaders' data_root
        args = [RECIPE, '--cfg-options', *SMALL] + [
            f'{split}_dataloader.dataset.data_root={custom_coco}'
            for split in ('train', 'val', 'test')] + [
            f'{split}_evaluator.ann_file={custom_coco}annotations/val.json'
            for split in ('val', 'test')]
        expect = 'epoch_1.pth'
    else:
        from mmsnn.datasets import generate_demo_ade
        root = str(tmp_path / 'demo_ade')
        generate_demo_ade(root, num_train=4, num_val=2, image_size=(64, 64))
        args = [osp.join(REPO, 'configs', 'seg', 'demo', 'sdt_srb_demo.py'), '--cfg-options',
                f'data_root={root}', 'train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
                'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=2']
        for split in ('train', 'val', 'test'):
            args += [f'{split}_dataloader.num_workers=0',
                     f'{split}_dataloader.persistent_workers=False']
        for split in ('train', 'val', 'test'):  # mmseg's script does not re-point data_root
            args += [f'{split}_dataloader.dataset.data_root={root}']
        expect = 'iter_2.pth'
    work = tmp_path / 'work'
    # a new python, as the user starts it: the toolbox's script imports mmsnn through the
    # config's custom_imports alone
    proc = run_tool(script, *args[:1], '--work-dir', work, *args[1:], fresh=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (work / expect).is_file()
    assert 'AtomicCheckpointHook' in (work / osp.basename(args[0])).read_text()


def test_det_inferencer_on_photo_folder_and_batch(trained_custom, tmp_path):
    """README "Inference": DetInferencer with an mmsnn config and a trained checkpoint."""
    import cv2
    from mmdet.apis import DetInferencer
    work, ckpt = trained_custom
    with mmengine_checkpoint_globals():  # a training checkpoint holds mmengine's log objects
        inferencer = DetInferencer(model=RECIPE, weights=str(ckpt), device='cpu')
    assert inferencer.model.dataset_meta['classes'] == CLASSES
    one = inferencer(photo(), out_dir=str(tmp_path / 'one'), pred_score_thr=0.0)
    assert len(one['predictions']) == 1
    assert set(one['predictions'][0]) >= {'labels', 'scores', 'bboxes'}
    assert os.listdir(tmp_path / 'one' / 'vis')  # the picture with the predictions drawn
    folder = tmp_path / 'images'
    folder.mkdir()
    img = cv2.imread(photo())
    for i, size in enumerate([(96, 128), (64, 64)]):
        cv2.imwrite(str(folder / f'{i}.jpg'), cv2.resize(img, size))
    assert len(inferencer(str(folder))['predictions']) == 2
    batch = [cv2.resize(img, (80, 80)), np.ascontiguousarray(img[:200, :200])]
    assert len(inferencer(batch, batch_size=2)['predictions']) == 2


@pytest.mark.slow
def test_seg_inferencer_on_photo_folder_and_batch(tmp_path):
    """README "Inference": MMSegInferencer with an mmsnn config and checkpoint."""
    import cv2
    import torch
    from mmengine.registry import init_default_scope
    from mmseg.apis import MMSegInferencer
    from mmseg.registry import MODELS
    config = osp.join(REPO, 'configs', 'seg', 'demo', 'sdt_srb_demo.py')
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(config).model)
    ckpt = tmp_path / 'seg.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': tuple('abcde'),
                                          'palette': [[i * 40, 0, 0] for i in range(5)]}}},
               ckpt)
    inferencer = MMSegInferencer(model=config, weights=str(ckpt), device='cpu')
    one = inferencer(photo(), out_dir=str(tmp_path / 'one'))
    img = cv2.imread(photo())
    assert one['predictions'].shape == img.shape[:2]
    assert os.listdir(tmp_path / 'one' / 'vis')
    folder = tmp_path / 'images'
    folder.mkdir()
    for i, size in enumerate([(96, 128), (64, 64)]):
        cv2.imwrite(str(folder / f'{i}.png'), cv2.resize(img, size))
    preds = inferencer(str(folder))['predictions']
    assert len(preds) == 2 and {p.shape for p in preds} == {(128, 96), (64, 64)}
    # mmseg's data preprocessor stacks a test batch without padding: images of one size
    preds = inferencer([cv2.resize(img, (80, 80)), img[:80, :80].copy()], batch_size=2)
    assert [p.shape for p in preds['predictions']] == [(80, 80), (80, 80)]
