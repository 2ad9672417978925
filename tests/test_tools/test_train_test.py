"""tools/train.py and tools/test.py on a toy config, and their answers to bad input.

The subprocess tests run the tools like a user does (exit status, stderr); the checks behind
them are also tested in-process, which is much cheaper than starting a python each time.
"""
import importlib.util
import json
import os
import os.path as osp
import pickle
import shutil

import pytest
import torch

from mmsnn.registry import explain_registry_error
from mmsnn.utils import checkpoint_io as ckpts
from mmsnn.utils import data_checks, paths, resume
from mmsnn.utils.checkpoint_io import mmengine_checkpoint_globals
from mmsnn.utils.config import check_config_file, enable_visualization, load_config
from mmsnn.utils.errors import MMSNNUserError
from tool_helpers import TOY, assert_user_error, load_tool, tool_error  # noqa: F401

HERE = osp.dirname(osp.dirname(osp.abspath(__file__)))  # tests/


@pytest.fixture(scope='module')
def trained(tmp_path_factory, run_tool):
    """A work dir after 4 toy iterations (checkpoints at 2 and 4)."""
    work_dir = tmp_path_factory.mktemp('train') / 'toy'
    proc = run_tool('tools/train.py', TOY, '--work-dir', work_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work_dir


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('train')


# ------------------------------------------------------------------------ train / resume

def test_train_writes_checkpoints(trained):
    assert {'iter_2.pth', 'iter_4.pth', 'last_checkpoint'} <= set(os.listdir(trained))
    # mmengine's own checkpoint loads with torch's safe loader (weights_only=True) and
    # mmsnn's allow-list of mmengine's objects
    with mmengine_checkpoint_globals():
        ckpt = torch.load(trained / 'iter_4.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 4
    assert (trained / 'rank0.done').read_text().startswith('world_size=1')


def test_resume_continues_from_saved_iteration(trained, tmp_path, run_tool):
    work_dir = tmp_path / 'toy'
    shutil.copytree(trained, work_dir)
    # last_checkpoint holds the absolute path in the old folder; --resume finds the copy
    proc = run_tool('tools/train.py', TOY, '--work-dir', work_dir, '--resume',
                    '--cfg-options', 'train_cfg.max_iters=6')
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 4' in log
    assert 'Iter(train) [5/6]' in log and 'Iter(train) [1/6]' not in log
    with mmengine_checkpoint_globals():
        ckpt = torch.load(work_dir / 'iter_6.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 6
    # the earlier run's checkpoints are still there
    assert (work_dir / 'iter_4.pth').exists() and (work_dir / 'iter_2.pth').exists()


def test_resume_restores_optimizer_state(trained, tmp_path):
    from mmengine.runner import Runner
    ckpt_path = str(trained / 'iter_4.pth')
    cfg = load_config(TOY)
    cfg.work_dir = str(tmp_path / 'inproc')
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_globals():
        runner.resume(ckpt_path)  # mmengine's plain torch.load, torch >= 2.6 weights_only
        saved = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    assert runner.iter == 4
    state = runner.optim_wrapper.optimizer.state_dict()['state']
    assert set(state) == set(saved['optimizer']['state']) and state
    for idx, entry in saved['optimizer']['state'].items():
        assert float(state[idx]['step']) == float(entry['step']) == 4
        assert torch.equal(state[idx]['exp_avg'], entry['exp_avg'])
        assert torch.equal(state[idx]['exp_avg_sq'], entry['exp_avg_sq'])
    assert torch.equal(runner.model.state_dict()['head.weight'],
                       saved['state_dict']['head.weight'])
    sched = runner.param_schedulers[0].state_dict()
    assert sched['last_step'] == saved['param_schedulers'][0]['last_step']


class _Foreign:
    """Any class mmsnn did not allow-list."""


class _GetattrEscape:
    """Pickles as ``getattr(OrderedDict, '__init__')``: the first step of a sandbox escape."""

    def __reduce__(self):
        from collections import OrderedDict
        return getattr, (OrderedDict, '__init__')


@pytest.mark.parametrize('payload', [_Foreign(), _GetattrEscape()])
def test_safe_loading_still_refuses_foreign_objects(tmp_path, payload):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': payload}, path)
    with pytest.raises(MMSNNUserError, match='could not read checkpoint'):
        ckpts.load_checkpoint_safely(str(path))


@pytest.fixture
def torch_2_1(monkeypatch):
    """This torch made to look like torch 2.1: no allow-list APIs for its safe loader
    (``add_safe_globals`` is torch >= 2.4, ``safe_globals`` >= 2.5), nothing allow-listed."""
    import torch._weights_only_unpickler as wou
    monkeypatch.setattr(torch, '__version__', '2.1.0')
    monkeypatch.delattr(torch.serialization, 'safe_globals', raising=False)
    monkeypatch.delattr(torch.serialization, 'add_safe_globals', raising=False)
    monkeypatch.setattr(wou, '_get_safe_globals', lambda: [], raising=False)
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)


def test_safe_loading_works_without_torchs_allow_list(trained, torch_2_1):
    """mmsnn's restricted unpickler reads a tools/train.py checkpoint (optimizer, scheduler,
    message hub) whatever torch version it runs on."""
    from mmengine.logging import HistoryBuffer
    ckpt = ckpts.load_checkpoint_file(trained / 'iter_4.pth')
    assert ckpt['meta']['iter'] == 4
    state = ckpt['optimizer']['state']
    assert state and all(float(s['step']) == 4 for s in state.values())
    assert all(torch.is_tensor(s['exp_avg']) for s in state.values())
    assert 'last_step' in ckpt['param_schedulers'][0]  # LinearLR's state
    buffers = ckpt['message_hub']['log_scalars']
    assert buffers and all(isinstance(b, HistoryBuffer) for b in buffers.values())
    assert resume.missing_resume_state(ckpt) == []


@pytest.mark.parametrize('scheduler', ['LinearLR', 'MultiStepLR', 'PolyLR', 'StepLR',
                                       'CosineAnnealingLR', 'ExponentialLR'])
def test_safe_loading_reads_every_scheduler_state(tmp_path, request, scheduler):
    """The schedulers of mmdet's / mmseg's configs pickle more than tensors (MultiStepLR: a
    Counter of milestones); their saved state must load through the restricted unpickler."""
    from mmengine.registry import PARAM_SCHEDULERS
    args = dict(LinearLR=dict(start_factor=0.1, end=10), MultiStepLR=dict(milestones=[8, 11]),
                PolyLR=dict(eta_min=1e-4, power=0.9, end=100), StepLR=dict(step_size=3),
                CosineAnnealingLR=dict(T_max=10), ExponentialLR=dict(gamma=0.9))[scheduler]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    sched = PARAM_SCHEDULERS.build(dict(type=scheduler, **args), default_args=dict(
        optimizer=optimizer))
    optimizer.step()
    sched.step()
    path = tmp_path / 'state.pth'
    torch.save({'meta': {'iter': 1}, 'param_schedulers': [sched.state_dict()]}, path)
    request.getfixturevalue('torch_2_1')  # as on a torch without the allow-list API
    loaded = ckpts.load_checkpoint_file(path)['param_schedulers'][0]
    assert loaded == sched.state_dict()


class _ShellCommand:
    """Pickles as ``os.system(command)``: what an unrestricted unpickler would run."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_safe_loading_refuses_a_pickled_call_on_any_torch(tmp_path, torch_2_1):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _ShellCommand(f'touch {marker}')}, path)
    with pytest.raises(ckpts.CheckpointReadError) as exc:
        ckpts.load_checkpoint_file(path)
    assert not exc.value.damaged and f'it pickles {os.system.__module__}.system' in str(exc.value)
    assert not marker.exists()


def test_named_unreadable_resume_checkpoint_stops(trained, tmp_path, train_tool, capsys):
    """--resume PATH of a damaged file stops naming it; no older checkpoint is taken."""
    work_dir = tmp_path / 'toy'
    shutil.copytree(trained, work_dir)
    named = work_dir / 'iter_4.pth'
    named.write_bytes(named.read_bytes()[:1000])
    before = {p.name: p.read_bytes() for p in work_dir.iterdir() if p.is_file()}
    err = tool_error(train_tool, [TOY, '--work-dir', work_dir, '--resume', named], capsys)
    assert f"error: --resume '{named}': the file is damaged or incomplete" in err
    assert 'iter_2.pth' not in err and 'resuming from' not in err
    assert '\n' not in err[err.index('error: '):].strip()  # one line
    assert {p.name: p.read_bytes() for p in work_dir.iterdir() if p.is_file()} == before


# ---------------------------------------------------------------------------- test.py

def test_test_tool_dumps_results_and_metrics(trained, tmp_path, run_tool):
    out = tmp_path / 'res.pkl'
    work_dir = tmp_path / 'test_wd'
    proc = run_tool('tools/test.py', TOY, trained / 'iter_4.pth', '--work-dir', work_dir,
                    '--out', out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'toy/accuracy' in proc.stdout
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 4  # one prediction per test image
    record = json.loads((work_dir / 'metrics.json').read_text())
    assert 'toy/accuracy' in record['metrics']
    per_run = [p for p in work_dir.glob('*/metrics.json')]
    assert len(per_run) == 1 and json.loads(per_run[0].read_text()) == record


def test_test_tool_mismatched_checkpoint_names_keys(trained, run_tool, tmp_path):
    proc = run_tool('tools/test.py', TOY, trained / 'iter_4.pth', '--work-dir',
                    tmp_path / 'wd', '--cfg-options', 'model.num_classes=5')
    assert_user_error(proc, 'does not fit', 'wrongly shaped', 'head.weight: checkpoint (3, 16) '
                      'vs model (5, 16)', 'head.bias')


def test_test_tool_refuses_existing_out(trained, tmp_path, run_tool):
    out = tmp_path / 'old.pkl'
    out.write_bytes(b'earlier results')
    proc = run_tool('tools/test.py', TOY, trained / 'iter_4.pth', '--out', out,
                    '--work-dir', tmp_path / 'wd')
    assert_user_error(proc, 'already exists', '--overwrite')
    assert out.read_bytes() == b'earlier results'
    with pytest.raises(MMSNNUserError, match=r'\.pkl'):
        paths.check_out_file(str(tmp_path / 'res.json'))
    paths.check_out_file(str(out), overwrite=True)  # allowed when asked


def test_show_dir_without_visualization_hook(trained, tmp_path, run_tool):
    proc = run_tool('tools/test.py', TOY, trained / 'iter_4.pth', '--show-dir', tmp_path / 'vis',
                    '--work-dir', tmp_path / 'wd')
    assert_user_error(proc, 'default_hooks.visualization', 'DetVisualizationHook')


def test_enable_visualization_per_scope():
    from mmengine.config import Config
    det = Config(dict(default_scope='mmdet', default_hooks=dict(
        visualization=dict(type='DetVisualizationHook'))))
    enable_visualization(det, '/tmp/vis')
    assert det.default_hooks.visualization == dict(type='DetVisualizationHook', draw=True,
                                                   test_out_dir='/tmp/vis')
    seg = Config(dict(default_scope='mmseg', visualizer=dict(type='SegLocalVisualizer'),
                      default_hooks=dict(visualization=dict(type='SegVisualizationHook'))))
    enable_visualization(seg, '/tmp/vis')
    assert seg.default_hooks.visualization.draw and seg.default_hooks.visualization.interval == 1
    assert seg.visualizer.save_dir == '/tmp/vis'


# -------------------------------------------------------------------------- bad input

def test_missing_config(run_tool):
    proc = run_tool('tools/train.py', 'configs/det/no_such_config.py')
    assert_user_error(proc, "config file 'configs/det/no_such_config.py' does not exist",
                      'fix:')
    with pytest.raises(MMSNNUserError, match='does not exist'):
        check_config_file('nope/none.py')


def test_existing_checkpoints_need_resume_or_overwrite(trained, train_tool, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in trained.iterdir()}
    err = tool_error(train_tool, [TOY, '--work-dir', trained], capsys)
    for needle in ('already holds checkpoints', 'iter_4.pth', 'last_checkpoint', '--resume',
                   '--work-dir DIR', '--overwrite'):
        assert needle in err, (needle, err)
    assert {p.name: p.stat().st_mtime_ns for p in trained.iterdir()} == before
    resume.check_no_checkpoints_overwritten(str(trained), overwrite=True)
    resume.check_no_checkpoints_overwritten(str(trained), resume=True)


def test_unknown_module_type_lists_mmsnn_names(run_tool, tmp_path):
    proc = run_tool('tools/train.py', TOY, '--work-dir', tmp_path / 'wd',
                    '--cfg-options', 'model.backbone.type=MetaSTD')
    assert_user_error(proc, "unknown model type 'MetaSTD'", 'did you mean: MetaSDT',
                      'mmsnn model types in mmdet:', 'MetaSDT',
                      "custom_imports = dict(imports=['mmsnn']")


def test_registry_error_for_other_scope_and_kinds():
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')  # whatever scope an earlier test left
    with pytest.raises(KeyError) as exc:
        DATASETS.build(dict(type='CocoDatset'))
    err = explain_registry_error(exc.value)
    assert err is not None and "unknown dataset type 'CocoDatset'" in str(err)
    assert 'did you mean: CocoDataset' in str(err)
    assert explain_registry_error(KeyError('head.weight')) is None  # not a registry miss
    # an mmsnn module of the other toolbox
    from mmsnn.registry import mmsnn_names
    seg_only = sorted(set(mmsnn_names('model', 'mmseg')) - set(mmsnn_names('model', 'mmdet')))
    if seg_only:
        err = explain_registry_error(KeyError(
            f'{seg_only[0]} is not in the mmdet::model registry. Please check ...'))
        assert f"'{seg_only[0]}' is an mmsnn module for mmseg only" in str(err)


def test_missing_data_root_names_layout_and_fix(train_tool, tmp_path, capsys):
    err = tool_error(train_tool, [TOY, '--work-dir', tmp_path / 'wd', '--cfg-options',
                                  'train_dataloader.dataset.data_root=/nonexistent/toy'],
                     capsys)
    assert "train_dataloader.dataset.data_root: folder '/nonexistent/toy' does not exist" in err
    assert '--cfg-options data_root=/path/to/dataset/' in err
    assert 'single entries: train_dataloader.dataset.data_root=...' in err
    assert not (tmp_path / 'wd').exists()  # checked before anything is written


def test_missing_coco_and_ade_layouts(tmp_path, monkeypatch):
    from mmengine.config import Config
    monkeypatch.chdir(tmp_path)
    coco = Config(dict(
        train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=dict(
            type='CocoDataset', data_root='data/coco/',
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/')))),
        val_dataloader=dict(dataset=dict(
            type='CocoDataset', data_root='data/coco/',
            ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'))),
        val_evaluator=dict(type='CocoMetric',
                           ann_file='data/coco/annotations/instances_val2017.json')))
    with pytest.raises(MMSNNUserError) as exc:
        data_checks.check_data_paths(coco, ('train', 'val'))
    msg = str(exc.value)
    assert ("train_dataloader.dataset.dataset.data_root, val_dataloader.dataset.data_root: "
            "folder 'data/coco/' does not exist") in msg
    assert 'expected COCO layout' in msg and 'annotations/instances_train2017.json' in msg
    assert 'val_evaluator.ann_file' in msg and '--cfg-options' in msg
    # root present, one file missing: only that file is named
    (tmp_path / 'data/coco/annotations').mkdir(parents=True)
    for d in ('train2017', 'val2017'):
        (tmp_path / 'data/coco' / d).mkdir()
    (tmp_path / 'data/coco/annotations/instances_val2017.json').write_text('{}')
    with pytest.raises(MMSNNUserError) as exc:
        data_checks.check_data_paths(coco, ('train', 'val'))
    assert 'instances_train2017.json' in str(exc.value)
    assert 'instances_val2017.json\' does not exist' not in str(exc.value)
    (tmp_path / 'data/coco/annotations/instances_train2017.json').write_text('{}')
    data_checks.check_data_paths(coco, ('train', 'val'))  # complete: no error

    ade = Config(dict(test_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[dict(
            type='ADE20KDataset', data_root='data/ade/ADEChallengeData2016',
            data_prefix=dict(img_path='images/validation',
                             seg_map_path='annotations/validation'))]))))
    with pytest.raises(MMSNNUserError) as exc:
        data_checks.check_data_paths(ade, ('test', ))
    assert 'test_dataloader.dataset.datasets.0.data_root' in str(exc.value)
    assert 'expected ADE20K layout' in str(exc.value)
    assert 'images/training/' in str(exc.value)
    # the demo datasets: the fix is to generate them
    demo = Config(dict(test_dataloader=dict(dataset=dict(
        type='DemoADE20KDataset', data_root='data/demo_ade',
        data_prefix=dict(img_path='images/validation')))))
    with pytest.raises(MMSNNUserError) as exc:
        data_checks.check_data_paths(demo, ('test', ))
    assert 'generate the demo data first: python -m mmsnn.datasets.demo_ade --out ' \
        'data/demo_ade' in str(exc.value)
    assert '    data/demo_ade/\n' in str(exc.value)


def test_unwritable_work_dir(tmp_path, train_tool, capsys, monkeypatch):
    blocker = tmp_path / 'taken'
    blocker.write_text('a file where the work dir should be')
    err = tool_error(train_tool, [TOY, '--work-dir', blocker], capsys)
    assert 'a file of that name is in the way' in err and '--work-dir' in err
    with pytest.raises(MMSNNUserError, match='is a file, not a folder'):
        paths.check_writable_dir(str(blocker / 'sub' / 'dir'))
    # permissions (as root chmod does not stop writes, so the refusals are simulated)
    monkeypatch.setattr(os, 'access', lambda *a, **k: False)
    with pytest.raises(MMSNNUserError, match='no write permission'):
        paths.check_writable_dir(str(tmp_path / 'new' / 'dir'))

    def refuse(*a, **k):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(paths.tempfile, 'mkstemp', refuse)
    with pytest.raises(MMSNNUserError, match='is not writable'):
        paths.check_writable_dir(str(tmp_path))


def test_work_dir_is_config_folder(tmp_path, train_tool, capsys):
    config = tmp_path / 'toy_config.py'
    shutil.copy(TOY, config)
    err = tool_error(train_tool, [config, '--work-dir', tmp_path], capsys)
    assert 'would overwrite the config' in err


def test_checkpoint_mismatch_names_keys(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd['0.weight'] = torch.zeros(5, 4)
    del sd['1.running_var']
    sd['2.extra'] = torch.zeros(1)
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': sd, 'meta': {'iter': 1}, 'message_hub': {}}, path)
    with pytest.raises(MMSNNUserError) as exc:
        ckpts.check_checkpoint_fits(model, str(path), 'load_from')
    msg = str(exc.value)
    assert '0.weight: checkpoint (5, 4) vs model (3, 4)' in msg
    assert 'missing in the checkpoint (1):\n      1.running_var' in msg
    assert 'unexpected in the checkpoint (1):\n      2.extra' in msg
    assert "init_cfg=dict(type='Pretrained'" in msg
    # a fitting weights-only file cannot be resumed, but loads
    torch.save(model.state_dict(), path)
    ckpts.check_checkpoint_fits(model, str(path), 'load_from')
    with pytest.raises(MMSNNUserError, match='weights only'):
        ckpts.check_checkpoint_fits(model, str(path), 'resume')
    with pytest.raises(MMSNNUserError, match='is not there'):
        ckpts.check_checkpoint_fits(model, str(tmp_path / 'none.pth'), 'test')


# ------------------------------------------------------------------------ thin tools, no copies
def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


def test_demo_data_command_line_is_a_tool(tmp_path, run_tool_each):
    """The demo generators' command line is ``tools/misc/make_demo_data.py``; the documented
    ``python -m mmsnn.datasets.demo_coco`` / ``demo_ade`` run it and write the same files.
    The dataset modules parse no command line themselves (no argparse)."""
    import ast
    common = ['--num-train', '2', '--num-val', '1', '--size', '40', '48']
    kinds = (('coco', 'demo_coco'), ('ade', 'demo_ade'))
    # the four command lines in one process (each writes its own folder)
    runs = []
    for kind, module in kinds:
        runs += [('tools/misc/make_demo_data.py', [kind, '--out', tmp_path / f'{kind}_tool',
                                                   *common]),
                 (f'-m mmsnn.datasets.{module}', ['--out', tmp_path / f'{kind}_module', *common])]
    for proc in run_tool_each(runs):
        assert proc.returncode == 0, proc.stderr[-2000:]
    for kind, module in kinds:
        a, b = tmp_path / f'{kind}_tool', tmp_path / f'{kind}_module'
        files = _files(a)
        assert files and files == _files(b)
        with open(osp.join(HERE, '..', 'mmsnn', 'datasets', f'{module}.py')) as f:
            tree = ast.parse(f.read())
        imported = {n.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for n in node.names}
        assert 'argparse' not in imported, module


def test_convert_reference_reports_through_the_package_helper(tmp_path, run_tool, tool_env):
    """``tools/convert_reference.py`` has no ``fail()`` of its own: its errors go through
    ``mmsnn.utils.errors.fail``, which under ``tools/dist_*.sh`` (``MMSNN_ERROR_DIR``) writes
    the message to the rank's file instead of printing it from every process."""
    import ast
    with open(osp.join(HERE, '..', 'mmsnn', 'cli', 'convert_reference.py')) as f:
        tree = ast.parse(f.read())
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'fail']
    err_dir = tmp_path / 'errors'
    err_dir.mkdir()
    env = dict(tool_env, MMSNN_ERROR_DIR=str(err_dir))
    proc = run_tool('tools/convert_reference.py', tmp_path / 'missing.pth', tmp_path / 'out.pth',
                    '--task', 'det', env=env)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert 'missing.pth' in (err_dir / 'rank0.txt').read_text()
    assert not (tmp_path / 'out.pth').exists()


def test_resume_auto_edge_cases(tmp_path):
    assert resume.resolve_auto_resume(str(tmp_path)) is None  # nothing to resume: new run
    (tmp_path / 'iter_2.pth').write_bytes(b'')
    with pytest.raises(MMSNNUserError, match='no last_checkpoint'):
        resume.resolve_auto_resume(str(tmp_path))
    (tmp_path / 'last_checkpoint').write_text('/elsewhere/iter_9.pth')
    with pytest.raises(MMSNNUserError, match='does not exist'):
        resume.resolve_auto_resume(str(tmp_path))
    (tmp_path / 'last_checkpoint').write_text('/moved/away/iter_2.pth')
    assert resume.resolve_auto_resume(str(tmp_path)) == str(tmp_path / 'iter_2.pth')


def test_auto_resume_prefers_the_path_last_checkpoint_names(tmp_path):
    """A same-named file in the work dir does not shadow the named checkpoint."""
    old, new = tmp_path / 'old', tmp_path / 'new'
    old.mkdir()
    new.mkdir()
    (old / 'iter_4.pth').write_bytes(b'the named one')
    (new / 'iter_4.pth').write_bytes(b'a stale copy')
    (new / 'last_checkpoint').write_text(str(old / 'iter_4.pth'))
    assert resume.resolve_auto_resume(str(new)) == str(old / 'iter_4.pth')


def test_config_errors_show_file_and_line(tmp_path):
    """A syntax or runtime error in a config is shown as Python shows it."""
    base = tmp_path / 'base.py'
    base.write_text("a = 1\nmodel = dict(type='X')\nb = 1 +\nc = 2\n")
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = {str(base)!r}\n")
    for path in (base, child):  # also when the error is in a _base_ file
        with pytest.raises(MMSNNUserError) as exc:
            load_config(str(path))
        msg = str(exc.value)
        assert f'File "{base}", line 3' in msg, msg
        assert 'b = 1 +' in msg and 'SyntaxError: invalid syntax' in msg
    runtime = tmp_path / 'runtime.py'
    runtime.write_text("a = 1\nb = undefined_name + 1\n")
    with pytest.raises(MMSNNUserError) as exc:
        load_config(str(runtime))
    msg = str(exc.value)
    assert f'File "{runtime}", line 2' in msg and 'b = undefined_name + 1' in msg
    assert "NameError: name 'undefined_name' is not defined" in msg
    # the known cases keep their one-line message
    missing = tmp_path / 'imports.py'
    missing.write_text("custom_imports = dict(imports=['no_such_module_xyz'])\n")
    with pytest.raises(MMSNNUserError, match=r"imports custom modules \(custom_imports\) and "
                       r"one cannot be imported: ImportError: Failed to import no_such_module_xyz"):
        load_config(str(missing))


def test_runtime_cpu_settings(monkeypatch):
    from mmengine.config import Config
    from mmsnn.utils import runtime
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW'))))
    runtime.configure_runtime(cfg, 'none', amp=True)
    if not torch.cuda.is_available():
        assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16' and 'loss_scale' not in cfg.optim_wrapper
        amp_cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper')))
        with pytest.raises(MMSNNUserError, match='--amp'):
            runtime.configure_runtime(amp_cfg, 'none')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(MMSNNUserError, match='dist_train.sh'):
        runtime.configure_runtime(Config(dict()), 'pytorch')


def test_cpu_amp_train_step():
    from mmdet.registry import MODELS
    from mmengine.registry import OPTIM_WRAPPERS
    import mmsnn_toy  # noqa: F401
    model = MODELS.build(dict(type='ToySpikeClassifier', backbone=dict(
        type='MetaSDT', embed_dims=(8, 16, 16, 16), num_heads=2, out_indices=(4, ))))
    wrapper = OPTIM_WRAPPERS.build(dict(type='CPUAmpOptimWrapper', dtype='bfloat16',
                                        optimizer=torch.optim.AdamW(model.parameters())))
    data = dict(inputs=torch.randn(2, 3, 32, 32), data_samples=torch.tensor([0, 2]))
    before = model.head.weight.detach().clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss_cls'])
    assert not torch.equal(before, model.head.weight)


def test_amp_trains_with_the_machines_autocast(tmp_path, run_tool):
    """--amp: fp16 with dynamic loss scaling (AmpOptimWrapper) on a GPU machine, bf16 autocast
    without loss scaling (CPUAmpOptimWrapper) on a CPU one."""
    work_dir = tmp_path / 'amp'
    proc = run_tool('tools/train.py', TOY, '--work-dir', work_dir, '--amp',
                    '--cfg-options', 'train_cfg.max_iters=2')
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (work_dir / 'iter_2.pth').exists()
    dumped = (work_dir / osp.basename(TOY)).read_text()
    if torch.cuda.is_available():
        assert "type='AmpOptimWrapper'" in dumped and "loss_scale='dynamic'" in dumped
    else:
        assert "type='CPUAmpOptimWrapper'" in dumped and "dtype='bfloat16'" in dumped


def test_cpu_amp_wrapper_runs_the_quantiser_in_bf16():
    from mmsnn.models import MetaSDT
    from mmsnn.engine import CPUAmpOptimWrapper
    model = MetaSDT(embed_dims=(8, 16, 16, 16), out_indices=(4,))
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.AdamW(model.parameters()))
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 32, 32))[0]
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().mean())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_convert_reference_refuses_a_partial_conversion(tmp_path, capsys):
    """``tools/convert_reference.py``: a checkpoint with a key missing and one unexpected
    key exits 1 and writes nothing; ``--allow-partial`` writes it, with both keys named in
    its meta; a complete one exits 0 (in-process, a tiny backbone config)."""
    from mmsnn.cli import convert_reference as cli
    from mmsnn.models import MetaSDT
    config = tmp_path / 'tiny.py'
    config.write_text("default_scope = 'mmdet'\nmodel = dict(backbone=dict(type='MetaSDT', "
                      "embed_dims=(8, 16, 16, 16), num_heads=2, mixer='srb'))\n")
    full = MetaSDT(embed_dims=(8, 16, 16, 16), num_heads=2, mixer='srb').state_dict()
    dropped = sorted(full)[-1]
    partial = {k: v for k, v in full.items() if k != dropped}
    partial['extra.weight'] = torch.zeros(3)
    for name, sd in (('full', full), ('partial', partial)):
        torch.save({'state_dict': sd}, tmp_path / f'{name}.pth')

    def convert(name, *flags):
        return cli.main([str(tmp_path / f'{name}.pth'), str(tmp_path / f'{name}_out.pth'),
                         '--task', 'backbone', '--config', str(config), *flags])

    assert convert('full') == 0
    assert (tmp_path / 'full_out.pth').is_file()
    with pytest.raises(SystemExit) as exit_info:
        convert('partial')
    assert exit_info.value.code == 1
    err = capsys.readouterr()
    assert '1 keys missing in the checkpoint, 1 unexpected' in err.err
    assert '--allow-partial' in err.err
    assert dropped in err.out and 'extra.weight' in err.out
    assert not (tmp_path / 'partial_out.pth').exists()
    assert convert('partial', '--allow-partial') == 0
    meta = torch.load(tmp_path / 'partial_out.pth', weights_only=True)['meta']
    assert meta['missing_keys'] == [dropped] and meta['unexpected_keys'] == ['extra.weight']


def test_test_py_metric_helpers_live_in_the_package(tmp_path):
    """``tools/test.py``'s metric class and metrics file come from the package
    (``mmsnn.analysis.test_metrics``): instances counted per image, the COCO zeros of a
    silent detector, numpy metric values written as JSON numbers."""
    import numpy as np
    from mmengine.config import Config

    from mmsnn.analysis.test_metrics import (PredictionCounter, save_metrics,
                                             zero_detection_metrics)
    counter = PredictionCounter()
    counter.process({}, [dict(pred_instances=dict(scores=[0.9, 0.8])),
                         dict(pred_instances=dict(scores=[])), dict(pred_sem_seg=1)])
    assert counter.compute_metrics(counter.results) == {}
    assert (counter.images, counter.instances) == (2, 2)

    cfg = Config(dict(model=dict(test_cfg=dict(rcnn=dict(score_thr=0.05))),
                      test_evaluator=dict(type='CocoMetric', metric=['bbox', 'segm'])))
    zeros = zero_detection_metrics(cfg, None, 3)
    assert zeros['coco/bbox_mAP'] == 0.0 and zeros['coco/segm_mAP_l'] == 0.0 and len(zeros) == 12

    files = [str(tmp_path / 'a.json'), str(tmp_path / 'b.json')]
    save_metrics({'toy/accuracy': np.float32(0.5), 'n': np.int64(3)}, files, 'c.py', 'k.pth')
    for path in files:
        record = json.loads(open(path).read())
        assert record['metrics'] == {'toy/accuracy': 0.5, 'n': 3}
        assert record['config'] == osp.abspath('c.py')


#: scripts whose logic lives in the package (tests run them, never import them)
THIN_SCRIPTS = ('analysis/benchmark', 'analysis/benchmark_backbone', 'analysis/energy',
                'analysis/seed_sweep', 'analysis/spike_agreement', 'analysis/st_erf', 'test',
                'demo', 'train', 'convert_reference', 'misc/check_dataset')


def test_tests_never_import_a_script():
    """No test loads one of :data:`THIN_SCRIPTS` by path or puts ``tools/`` on ``sys.path``
    (the helpers the tests need are in the package)."""
    import re
    files = sorted(osp.join(d, n) for d, _, names in os.walk(HERE) for n in names
                   if n.endswith('.py'))
    assert len(files) > 30, files  # every test file of every folder, helpers included
    for name in files:
        text = open(name).read()
        assert not re.search(r"sys\.path\.insert\([^)]*(TOOLS|'tools')", text), name
        for m in re.finditer(r'spec_from_file_location\(([^)]*)\)', text):
            for script in THIN_SCRIPTS:
                parts = script.split('/')
                assert not all(f"'{p}" in m.group(1) for p in parts), (name, m.group(0))
        for script in THIN_SCRIPTS:
            assert f"load_tool(repo_root, '{script}')" not in text, (name, script)


