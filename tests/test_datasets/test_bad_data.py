"""Bad data stops cleanly before training or is skipped by choice, and a
diverging run stops with one line and keeps its checkpoints.

Small demo datasets (64 px, a handful of images) are broken on purpose: a file cut short, a
file that is not an image, an image the annotation names but that is not there, a box of
zero / negative size, a size that does not match, a category that is not a class.
"""
import json
import os
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch

from mmsnn.datasets import generate_demo_ade, generate_demo_coco
from mmsnn.datasets.checks import dataset_problems
from mmsnn.engine.hooks import NonFiniteLossHook
from mmsnn.utils.config import load_config
from mmsnn.utils.errors import MMSNNUserError
from tool_helpers import TOY, assert_user_error, load_tool, tool_error

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET = osp.join(REPO, 'configs', 'det', 'demo', 'sdt_srb_s_demo.py')
SEG = osp.join(REPO, 'configs', 'seg', 'demo', 'sdt_srb_demo.py')
# one tiny epoch of the det demo on 4 images (2 iterations of 2)
DET_SMALL = ['train_dataloader.batch_size=2', 'train_cfg.max_epochs=1',
             'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1']


def truncate(path):
    """Cut the file to half its length (a copy interrupted mid-way)."""
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


def garble(path):
    with open(path, 'wb') as f:
        f.write(b'this is not an image' * 10)


@pytest.fixture(scope='module')
def check_tool():
    from mmsnn.cli import check_dataset
    return check_dataset


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('train')


@pytest.fixture
def coco(tmp_path):
    """A demo COCO dataset: 4 train images (000001..000004.png), 2 val."""
    root = str(tmp_path / 'coco')
    generate_demo_coco(root, num_train=4, num_val=2, image_size=(64, 64), seed=3)
    return root + '/'


def edit_json(path, fn):
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, 'w') as f:
        json.dump(data, f)


def break_coco(root, categories=True):
    """Every kind of problem in the train split (a category renamed too with ``categories``,
    which tools/train.py's class check reports on its own); returns {name: expected text in
    its line}."""
    img = osp.join(root, 'train2017')
    truncate(osp.join(img, '000001.png'))
    garble(osp.join(img, '000002.png'))
    os.remove(osp.join(img, '000003.png'))

    def edit(data):
        anns = data['annotations']
        anns[0]['bbox'][2] = 0               # zero width
        anns[1]['bbox'][3] = -5              # negative height
        data['images'][3]['width'] = 99      # 000004.png is 64 wide
        if categories:
            data['categories'][2]['name'] = 'hexagon'   # not a class of the config
    edit_json(osp.join(root, 'annotations', 'instances_train2017.json'), edit)
    expected = {'000001.png': 'truncated', '000002.png': 'cannot be read as an image',
                '000003.png': 'does not exist', '000004.png': 'but the annotation says 99x64'}
    if categories:
        expected['hexagon'] = "category 'hexagon'"
    return expected


# ------------------------------------------------------------------ the dataset check (3)

@pytest.mark.slow
def test_check_dataset_lists_every_coco_problem(coco, check_tool, capsys):
    assert check_tool.main([DET, '--cfg-options', f'data_root={coco}']) == 0
    capsys.readouterr()
    expected = break_coco(coco)
    assert check_tool.main([DET, '--cfg-options', f'data_root={coco}']) == 1
    out = capsys.readouterr().out.splitlines()
    for key, text in expected.items():
        assert any(key in line and text in line for line in out), (key, out)
    assert sum('box of zero or negative size' in line for line in out) == 2, out
    assert "the config class 'triangle' is not a category" in '\n'.join(out)
    # the images of the val split are fine: no line names them
    assert not any('val2017' in line for line in out), out


def test_header_only_check_finds_truncated_png_and_jpeg(tmp_path):
    from mmsnn.datasets.checks import image_problem
    import cv2
    import numpy as np
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    for ext in ('png', 'jpg'):
        path = str(tmp_path / f'a.{ext}')
        cv2.imwrite(path, img)
        assert image_problem(path) == (None, (50, 40))
        truncate(path)
        assert 'cut short' in image_problem(path)[0]
        assert image_problem(path, decode=True)[0] is not None


@pytest.fixture
def ade(tmp_path):
    root = str(tmp_path / 'ade')
    generate_demo_ade(root, num_train=4, num_val=2, image_size=(64, 64))
    return root


@pytest.mark.slow
def test_check_dataset_seg_folders(ade, check_tool, capsys):
    assert check_tool.main([SEG, '--cfg-options', f'data_root={ade}']) == 0
    capsys.readouterr()
    imgs = sorted(os.listdir(osp.join(ade, 'images', 'training')))
    anns = osp.join(ade, 'annotations', 'training')
    os.remove(osp.join(anns, imgs[0].replace('.jpg', '.png')))   # image without annotation
    import cv2
    label = cv2.imread(osp.join(anns, imgs[1].replace('.jpg', '.png')), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(osp.join(anns, imgs[1].replace('.jpg', '.png')), label[:32])  # wrong size
    truncate(osp.join(ade, 'images', 'training', imgs[2]))
    assert check_tool.main([SEG, '--split', 'train', '--cfg-options',
                            f'data_root={ade}']) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3, out
    assert imgs[0].replace('.jpg', '.png') in out[0] and 'does not exist' in out[0]
    assert 'annotation is 64x32 but its image' in out[1] and imgs[1] in out[1]
    assert imgs[2] in out[2] and 'truncated' in out[2]


def test_check_dataset_cli_exit_status(coco, run_tool):
    truncate(osp.join(coco, 'train2017', '000002.png'))
    proc = run_tool('tools/misc/check_dataset.py', DET, '--split', 'train', '--header-only',
                    '--cfg-options', f'data_root={coco}', timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        f'{osp.join(coco, "train2017", "000002.png")}: PNG file is cut short (no end marker): '
        'truncated or corrupt (image id 2 of instances_train2017.json)']
    assert 'Traceback' not in proc.stderr


def test_train_check_data_stops_before_the_first_iteration(coco, train_tool, tmp_path,
                                                           capsys):
    expected = break_coco(coco, categories=False)
    work = tmp_path / 'work'
    err = tool_error(train_tool, [DET, '--check-data', '--work-dir', work, '--cfg-options',
                                  f'data_root={coco}', *DET_SMALL], capsys)
    assert '--check-data found 6 problem(s)' in err and 'skip_bad_samples=True' in err
    lines = err.splitlines()
    for key, text in expected.items():
        assert any(key in line and text in line for line in lines), (key, err)
    assert sum('box of zero or negative size' in line for line in lines) == 2, err
    assert not work.exists()


# ------------------------------------------------- a bad sample met while training (3)

def test_bad_sample_stops_with_one_line_or_is_skipped(coco, run_tool, tmp_path):
    garble(osp.join(coco, 'train2017', '000002.png'))
    os.remove(osp.join(coco, 'train2017', '000003.png'))
    bad = [osp.join(coco, 'train2017', n) for n in ('000002.png', '000003.png')]
    proc = run_tool('tools/train.py', DET, '--work-dir', tmp_path / 'stop', '--cfg-options',
                    f'data_root={coco}', *DET_SMALL)
    message = assert_user_error(proc, 'bad sample: ', 'skip_bad_samples=True')
    assert any(b in message for b in bad), message

    work = tmp_path / 'skip'
    proc = run_tool('tools/train.py', DET, '--work-dir', work, '--cfg-options',
                    f'data_root={coco}', 'train_dataloader.dataset.skip_bad_samples=True',
                    *DET_SMALL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    for path in bad:
        assert re.search(r'skipping bad sample: ' + re.escape(path), log), log[-4000:]
    assert (work / 'epoch_1.pth').is_file()


@pytest.mark.slow
def test_bad_sample_in_a_dataloader_worker_is_one_line(ade, capsys):
    """With worker processes torch re-raises the worker's error with its traceback in the
    message; the tool still prints the one line."""
    from mmengine.registry import init_default_scope
    from torch.utils.data import DataLoader

    from mmsnn.datasets import GuardedDataset
    from mmsnn.utils.errors import run_tool as run_body
    init_default_scope('mmseg')
    cfg = load_config(SEG, {'data_root': ade})
    ds = dict(cfg.train_dataloader.dataset)
    name = sorted(os.listdir(osp.join(ade, 'images', 'training')))[0]
    garble(osp.join(ade, 'images', 'training', name))
    dataset = GuardedDataset(ds)

    def body():
        for _ in DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=lambda b: b):
            pass
    with pytest.raises(SystemExit) as exc:
        run_body(body)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: bad sample: {osp.join(ade, "images", "training", name)}')
    assert 'Traceback' not in err and err.count('error: ') == 1, err


@pytest.mark.slow
def test_a_bug_in_the_pipeline_is_not_taken_for_bad_data(coco):
    """Files that check out: the pipeline's own error is raised unchanged (not skipped)."""
    from mmcv.transforms import BaseTransform
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import init_default_scope

    from mmsnn.datasets import GuardedDataset

    @TRANSFORMS.register_module(name='_BuggyTransform', force=True)
    class _BuggyTransform(BaseTransform):
        def transform(self, results):
            raise ValueError('a bug in a transform')

    init_default_scope('mmdet')
    cfg = load_config(DET, {'data_root': coco})
    ds = dict(cfg.train_dataloader.dataset)
    ds['pipeline'] = [dict(type='LoadImageFromFile'), dict(type='_BuggyTransform')]
    dataset = GuardedDataset(ds, skip_bad_samples=True)
    with pytest.raises(ValueError, match='a bug in a transform'):
        dataset[0]


@pytest.mark.slow
def test_guarded_dataset_written_in_a_config_skips(coco, capsys):
    """The README's wrapper for mmdet's / mmseg's own tools: built from the registry, it
    skips a missing image with a warning naming it and returns the next sample."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = load_config(DET, {'data_root': coco})
    missing = osp.join(coco, 'train2017', '000001.png')
    os.remove(missing)
    dataset = DATASETS.build(dict(type='GuardedDataset', skip_bad_samples=True,
                                  dataset=cfg.train_dataloader.dataset))
    assert len(dataset) == 4 and dataset.metainfo['classes'][0] == 'circle'
    first = [i for i in range(4) if dataset.get_data_info(i)['img_path'] == missing][0]
    from mmengine.logging import MMLogger
    # a logger of its own, made current, writing to this test's captured stdout (an earlier
    # test's logger holds that test's stream)
    MMLogger.get_instance('test_guarded_dataset_written_in_a_config_skips')
    capsys.readouterr()
    sample = dataset[first]
    assert sample['data_samples'].img_path == dataset.get_data_info((first + 1) % 4)['img_path']
    # mmengine's logger writes to stdout
    assert f'skipping bad sample: {missing}: file does not exist' in capsys.readouterr().out


@pytest.mark.slow
def test_dataset_problems_of_a_clean_demo_set(coco, ade):
    det = load_config(DET, {'data_root': coco})
    problems, checked, _ = dataset_problems(det, decode=True)
    assert problems == [] and checked == 6
    seg = load_config(SEG, {'data_root': ade})
    problems, checked, _ = dataset_problems(seg, decode=True)
    assert problems == [] and checked == 6


# ------------------------------------------------------------- a diverging run (4)

def test_exploding_loss_stops_and_keeps_the_checkpoints(tmp_path, run_tool):
    """The loss explodes (inf) at step 3 of 4: the run stops there with one line, iter_2.pth
    (written before) stays the last checkpoint, and no model of step 3 or 4 is saved."""
    work = tmp_path / 'work'
    proc = run_tool('tools/train.py', TOY, '--work-dir', work, '--cfg-options',
                    'model.explode_from=3')
    message = assert_user_error(proc, 'non-finite loss at iteration 3: loss_cls=inf')
    assert message.splitlines()[0].startswith('error: non-finite loss at iteration 3: '
                                              'loss_cls=inf loss=inf')
    assert 'iter_2.pth' in message
    ckpts = sorted(p for p in os.listdir(work) if p.endswith('.pth'))
    assert ckpts == ['iter_2.pth']
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    from mmsnn.utils.checkpoint_io import mmengine_checkpoint_globals
    with mmengine_checkpoint_globals():
        state = torch.load(work / 'iter_2.pth', map_location='cpu')['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_nonfinite_loss_hook_can_be_turned_off(tmp_path, run_tool):
    work = tmp_path / 'work'
    proc = run_tool('tools/train.py', TOY, '--work-dir', work, '--cfg-options',
                    'model.explode_from=3', 'stop_on_nonfinite_loss=False')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / 'iter_4.pth').is_file()


def test_hook_refuses_to_save_non_finite_weights():
    runner = SimpleNamespace(iter=6, message_hub=SimpleNamespace(
        get_info=lambda key: 'work/iter_4.pth' if key == 'last_ckpt' else None))
    hook = NonFiniteLossHook()
    good = {'w': torch.ones(3), 'steps': torch.tensor(3)}
    hook.before_save_checkpoint(runner, {'state_dict': good})
    with pytest.raises(MMSNNUserError, match=r'weights are not finite \(head.w\) at '
                       r'iteration 6: the checkpoint is not written(.|\n)*checkpoint '
                       r'\(work/iter_4.pth\) is kept'):
        hook.before_save_checkpoint(runner, {'state_dict': {
            'head.w': torch.tensor([1.0, float('nan')])}})
    hook.after_train_iter(runner, 0, outputs={'loss': torch.tensor(1.0), 'acc': float('nan')})
    with pytest.raises(MMSNNUserError, match='iteration 7: loss_bbox=nan'):
        hook.after_train_iter(runner, 0, outputs={'loss_cls': torch.tensor(1.0),
                                                  'loss_bbox': torch.tensor(float('nan'))})
