"""The commands a user types first: the README's front-door configs run through the real
tools, and every config or tool path the documentation names exists.

The front door is ``tools/train.py configs/det/sdt_srb_coco.py`` and ``tools/test.py`` on the
same config. Here they run unchanged except for what a user with a tiny dataset would change
on the command line: where the data is, one epoch, one image per batch. The data is a
generated COCO-layout dataset whose categories carry COCO class names, so the config's own
80-class ``CocoDataset`` and heads read it as they would read COCO.
"""
import json
import os
import os.path as osp
import re

import pytest

from mmsnn.datasets.demo_coco import generate_demo_coco

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FRONT_DOOR = ('configs/det/sdt_srb_coco.py', 'configs/seg/sdt_srb_ade20k.py')
#: where users read commands: every configs/... or tools/... path named there must exist
DOC_GLOBS = ('README.md', 'configs/*/README.md', 'docs/**/*.md')
PATH_IN_DOCS = re.compile(r'(?<![\w/.-])((?:configs|tools)/[\w./-]+\.(?:py|sh))(?![\w{$])')


def _doc_files():
    import glob
    return sorted({p for g in DOC_GLOBS for p in glob.glob(osp.join(REPO, g), recursive=True)})


def test_documented_paths_exist():
    """A path in the docs that does not exist is a command that stops for the user."""
    missing = []
    for doc in _doc_files():
        with open(doc) as f:
            for lineno, line in enumerate(f, 1):
                for path in PATH_IN_DOCS.findall(line):
                    if not osp.exists(osp.join(REPO, path)):
                        missing.append(f'{osp.relpath(doc, REPO)}:{lineno}: {path}')
    assert not missing, '\n'.join(missing)


def test_the_scan_sees_the_front_door():
    """The scan above reads the README's front-door commands (so it can fail)."""
    with open(osp.join(REPO, 'README.md')) as f:
        found = set(PATH_IN_DOCS.findall(f.read()))
    assert set(FRONT_DOOR) <= found, found
    assert 'tools/train.py' in found and 'tools/test.py' in found


@pytest.mark.parametrize('config', FRONT_DOOR)
def test_front_door_config_is_the_default_model(config):
    """The short names are the s-size SRB models, loadable with their base toolbox."""
    from mmsnn.utils.config import load_config
    cfg = load_config(osp.join(REPO, config))
    assert cfg.model.backbone.type == 'MetaSDT'
    assert cfg.model.backbone.arch == 's' and cfg.model.backbone.mixer == 'srb'
    assert cfg.default_scope == ('mmdet' if '/det/' in config else 'mmseg')


#: the 3 demo shape classes renamed to COCO classes (any 3 of the 80 would do)
COCO_NAMES = ('person', 'bicycle', 'car')


@pytest.fixture(scope='module')
def coco_like(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_like')
    anns = generate_demo_coco(str(root), num_train=2, num_val=2, image_size=(96, 128),
                              num_classes=3, seed=0)
    for ann_file in anns.values():
        with open(ann_file) as f:
            coco = json.load(f)
        for cat in coco['categories']:
            cat['name'] = COCO_NAMES[cat['id'] - 1]
        with open(ann_file, 'w') as f:
            json.dump(coco, f)
    return str(root) + os.sep


def test_front_door_trains_and_tests(coco_like, tmp_path, run_tool):
    """``tools/train.py configs/det/sdt_srb_coco.py`` trains and validates, and
    ``tools/test.py`` on the same config evaluates its checkpoint: exit 0, COCO metrics."""
    config = 'configs/det/sdt_srb_coco.py'
    work_dir = tmp_path / 'sdt_srb_coco'
    small = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=1',
             'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
             'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    proc = run_tool('tools/train.py', config, '--work-dir', work_dir, '--cfg-options',
                    f'data_root={coco_like}', *small, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file(), sorted(os.listdir(work_dir))
    assert 'Epoch(val) [1][2/2]' in proc.stdout + proc.stderr  # validated at the epoch's end

    test_dir = tmp_path / 'test'
    proc = run_tool('tools/test.py', config, checkpoint, '--work-dir', test_dir,
                    '--cfg-options', f'data_root={coco_like}', *small[-2:], timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    logged = proc.stdout + proc.stderr
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert key in logged, logged[-3000:]
