"""Runs survive interruption: a real (toy) training killed with SIGKILL at several points,
including inside a checkpoint save, then resumed; the result equals an uninterrupted run.

The toy config trains 3 epochs of 4 iterations with a checkpoint after each epoch
(``tests/data/toy_epoch_config.py``); ``ToyStallHook`` (``tests/data/mmsnn_toy.py``) stops
a run at a chosen point so that the kill lands exactly there.
"""
import os
import os.path as osp
import signal
import subprocess
import time

import pytest
import torch

from mmsnn.utils.atomic import TMP_MARK, atomic_open, atomic_write
from mmsnn.utils.checkpoint_io import load_checkpoint_file
from mmsnn.utils.errors import MMSNNUserError
from mmsnn.utils.resume import readable_resume_checkpoint

HERE = osp.dirname(osp.dirname(osp.abspath(__file__)))  # tests/
TOY_EPOCHS = osp.join(HERE, 'data', 'toy_epoch_config.py')
TOY = osp.join(HERE, 'data', 'toy_config.py')


def stalling_config(tmp_path, name, base=TOY_EPOCHS, **stall):
    """A config = ``base`` + ``ToyStallHook(**stall)``; returns (path, marker)."""
    marker = str(tmp_path / f'{name}.stalled')
    args = ', '.join(f'{k}={v!r}' for k, v in dict(marker=marker, **stall).items())
    path = tmp_path / f'{name}.py'
    path.write_text(f"_base_ = {base!r}\n"
                    "custom_hooks = [dict(type='ToyRankMarkerHook'), "
                    f"dict(type='ToyStallHook', {args})]\n")
    return str(path), marker


def wait_for(marker, proc, timeout=240):
    t0 = time.time()
    while not osp.exists(marker):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f'run ended (rc {proc.returncode}) before the stall point:\n'
                                 f'{err[-4000:]}')
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError('the stall point was never reached')
        time.sleep(0.2)
    with open(marker) as f:
        return int(f.read())


def kill_at(cmd, marker, env, cwd):
    """Start ``cmd``, wait until it stalls, SIGKILL the stalled process; return its output."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pid = wait_for(marker, proc)
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    return proc, out, err


def weights(path):
    return load_checkpoint_file(path)['state_dict']


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, repo_root, venv_python,
                                                         tool_env, run_tool):
    train = [venv_python, osp.join(repo_root, 'tools', 'train.py')]
    baseline = tmp_path / 'baseline'
    proc = run_tool('tools/train.py', TOY_EPOCHS, '--work-dir', baseline)
    assert proc.returncode == 0, proc.stderr[-4000:]

    work = tmp_path / 'work'
    # 1. killed in epoch 1, before any checkpoint: --resume starts a new run
    cfg, marker = stalling_config(tmp_path, 'stall_iter2', after_iter=2)
    proc, _, _ = kill_at(train + [cfg, '--work-dir', str(work)], marker, tool_env, repo_root)
    assert proc.returncode != 0 and not list(work.glob('*.pth'))

    # 2. killed in epoch 2 (after epoch_1.pth): resumes from epoch_1
    cfg, marker = stalling_config(tmp_path, 'stall_iter6', after_iter=6)
    proc, out, err = kill_at(train + [cfg, '--work-dir', str(work), '--resume'], marker,
                             tool_env, repo_root)
    assert 'starting a new run' in err
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    epoch1 = (work / 'epoch_1.pth').read_bytes()

    # 3. killed inside the save of epoch_2.pth: the earlier state is intact
    cfg, marker = stalling_config(tmp_path, 'stall_save2', in_save='epoch_2.pth')
    proc, out, err = kill_at(train + [cfg, '--work-dir', str(work), '--resume'], marker,
                             tool_env, repo_root)
    assert 'resumed epoch: 1, iter: 4' in out + err
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    assert (work / 'epoch_1.pth').read_bytes() == epoch1
    assert (work / 'last_checkpoint').read_text().endswith('epoch_1.pth')
    partial = [p for p in os.listdir(work) if TMP_MARK in p]
    assert len(partial) == 1 and partial[0].startswith('.epoch_2.pth')

    # 4. killed in epoch 3; then the newest checkpoint is cut short (as a save killed in
    #    place leaves it): the resume warns, falls back to epoch_1 and says so
    cfg, marker = stalling_config(tmp_path, 'stall_iter10', after_iter=10)
    kill_at(train + [cfg, '--work-dir', str(work), '--resume'], marker, tool_env, repo_root)
    newest = work / 'epoch_2.pth'
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2])
    proc = run_tool('tools/train.py', TOY_EPOCHS, '--work-dir', work, '--resume')
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert f"cannot resume from '{newest}': the file is damaged or incomplete" in log
    assert f"resuming from '{work / 'epoch_1.pth'}' instead" in log
    assert 'resumed epoch: 1, iter: 4' in log

    assert_same_weights(work / 'epoch_3.pth', baseline / 'epoch_3.pth')
    assert partial[0] in os.listdir(work)  # nothing is deleted, not even the leftover


def test_resume_stops_when_every_checkpoint_is_damaged(tmp_path):
    for i, name in enumerate(['epoch_1.pth', 'epoch_2.pth']):
        torch.save({'state_dict': {'w': torch.ones(100)}}, tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[:len(data) // 3])
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    notes = []
    with pytest.raises(MMSNNUserError) as exc:
        readable_resume_checkpoint(str(tmp_path / 'epoch_2.pth'), str(tmp_path), notes.append)
    msg = str(exc.value)
    assert 'the files are damaged' in msg and 'Nothing was deleted' in msg
    assert 'epoch_1.pth' in msg and 'epoch_2.pth' in msg
    assert 'torch.save(state_dict)' not in msg  # not blamed on the file format
    assert len(notes) == 2 and all(n.startswith('warning: cannot resume from') for n in notes)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def training_state(i, optimizer=True):
    """A checkpoint as mmengine's Runner saves it (``optimizer=False``: as it saves a
    ``best_*.pth``, without optimizer and scheduler state)."""
    ckpt = {'meta': {'epoch': i, 'iter': 4 * i}, 'state_dict': {'w': torch.full((3,), float(i))},
            'message_hub': {'log_scalars': {}, 'runtime_info': {}, 'resumed_keys': {}}}
    if optimizer:
        ckpt.update(optimizer={'state': {0: {'step': torch.tensor(4. * i)}}, 'param_groups': []},
                    param_schedulers=[{'last_step': 4 * i}])
    return ckpt


def write_checkpoints(folder, names, damaged=(), weights_only=()):
    """``names`` oldest first (mtimes 1000, 1001, ...); ``damaged`` ones cut short."""
    for i, name in enumerate(names):
        path = folder / name
        torch.save(training_state(i, optimizer=name not in weights_only), path)
        if name in damaged:
            path.write_bytes(path.read_bytes()[:200])
        os.utime(path, (1000 + i, 1000 + i))
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_resume_fallback_takes_the_newest_readable(tmp_path):
    for i, name in enumerate(['epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth']):
        torch.save(training_state(i), tmp_path / name)
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    (tmp_path / 'epoch_3.pth').write_bytes(b'PK\x03\x04 cut short')
    notes = []
    path, ckpt = readable_resume_checkpoint(str(tmp_path / 'epoch_3.pth'), str(tmp_path),
                                            notes.append)
    assert path == str(tmp_path / 'epoch_2.pth')
    assert torch.equal(ckpt['state_dict']['w'], torch.full((3,), 1.))
    assert 'epoch_3.pth' in notes[0] and 'damaged or incomplete' in notes[0]
    assert notes[1].startswith(f"note: resuming from '{path}' instead")


def test_resume_fallback_skips_weights_only_checkpoints(tmp_path):
    """A best checkpoint (no optimizer / scheduler state) newer than the last complete one
    is not resumed from: that would restart momentum and warm-up without a word."""
    write_checkpoints(tmp_path, ['epoch_1.pth', 'best_acc_epoch_2.pth', 'epoch_2.pth'],
                      damaged={'epoch_2.pth'}, weights_only={'best_acc_epoch_2.pth'})
    notes = []
    path, ckpt = readable_resume_checkpoint(str(tmp_path / 'epoch_2.pth'), str(tmp_path),
                                            notes.append)
    assert path == str(tmp_path / 'epoch_1.pth') and 'optimizer' in ckpt
    assert 'damaged or incomplete' in notes[0]
    assert 'best_acc_epoch_2.pth' in notes[1] and 'optimizer' in notes[1]
    assert notes[2].startswith(f"note: resuming from '{path}' instead")


def test_resume_without_a_complete_checkpoint_names_the_weights_only_ones(tmp_path):
    before = write_checkpoints(tmp_path, ['best_acc_epoch_1.pth', 'epoch_2.pth'],
                               damaged={'epoch_2.pth'}, weights_only={'best_acc_epoch_1.pth'})
    with pytest.raises(MMSNNUserError) as exc:
        readable_resume_checkpoint(str(tmp_path / 'epoch_2.pth'), str(tmp_path), lambda t: None)
    msg = str(exc.value)
    assert '\n' not in msg  # one line
    assert 'best_acc_epoch_1.pth' in msg and 'epoch_2.pth' in msg
    assert f"load_from={tmp_path / 'best_acc_epoch_1.pth'}" in msg and 'without --resume' in msg
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_resume_from_a_named_unreadable_checkpoint_stops(tmp_path):
    """``--resume PATH``: the user asked for that file; an older one is not taken instead."""
    before = write_checkpoints(tmp_path, ['epoch_1.pth', 'epoch_2.pth'], damaged={'epoch_2.pth'})
    notes = []
    with pytest.raises(MMSNNUserError) as exc:
        readable_resume_checkpoint(str(tmp_path / 'epoch_2.pth'), str(tmp_path), notes.append,
                                   fallback=False)
    msg = str(exc.value)
    assert '\n' not in msg and str(tmp_path / 'epoch_2.pth') in msg
    assert 'damaged or incomplete' in msg and 'epoch_1.pth' not in msg
    assert not notes
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_resume_from_a_named_weights_only_checkpoint_stops(tmp_path):
    """``--resume best.pth``: resuming from weights only would restart the optimizer and the
    schedule, so it stops and names the ``load_from`` route instead."""
    before = write_checkpoints(tmp_path, ['epoch_1.pth', 'best_acc_epoch_1.pth'],
                               weights_only={'best_acc_epoch_1.pth'})
    best = str(tmp_path / 'best_acc_epoch_1.pth')
    with pytest.raises(MMSNNUserError) as exc:
        readable_resume_checkpoint(best, str(tmp_path), lambda t: None, fallback=False)
    msg = str(exc.value)
    assert '\n' not in msg and 'optimizer' in msg and f'load_from={best}' in msg
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a named complete checkpoint is taken as it is
    path, ckpt = readable_resume_checkpoint(str(tmp_path / 'epoch_1.pth'), str(tmp_path),
                                            lambda t: None, fallback=False)
    assert path == str(tmp_path / 'epoch_1.pth') and 'optimizer' in ckpt


class _BestSaveRunner:
    """The part of mmengine's Runner that ``CheckpointHook`` saves best checkpoints with;
    ``kill_in_save``: the next save fails half-way, as a kill would stop it."""

    def __init__(self, work_dir):
        from mmengine.logging import MessageHub, MMLogger
        self.work_dir, self.epoch, self.iter, self.kill_in_save = str(work_dir), 0, 0, False
        self.message_hub = MessageHub.get_instance(f'best_save_{id(self)}')
        self.logger = MMLogger.get_instance(f'best_save_{id(self)}', log_level='WARNING')

    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True, backend_args=None):
        from mmengine.runner.checkpoint import save_checkpoint
        if self.kill_in_save:
            raise KeyboardInterrupt(f'killed while saving {filename}')
        save_checkpoint({'meta': meta, 'state_dict': {'w': torch.full((2,), float(self.iter))}},
                        osp.join(out_dir, filename), backend_args=backend_args)


def test_killed_best_save_keeps_the_previous_best(tmp_path):
    from mmsnn.engine.hooks import AtomicCheckpointHook
    runner = _BestSaveRunner(tmp_path)
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, save_best='acc', rule='greater')
    hook.before_train(runner)
    runner.iter = 2
    hook.after_val_epoch(runner, {'acc': 0.5})
    assert sorted(os.listdir(tmp_path)) == ['best_acc_iter_2.pth']

    runner.iter = 4  # a better score: the new best replaces the old one once written
    hook.after_val_epoch(runner, {'acc': 0.7})
    assert sorted(os.listdir(tmp_path)) == ['best_acc_iter_4.pth']
    assert float(weights(tmp_path / 'best_acc_iter_4.pth')['w'][0]) == 4.
    saved = (tmp_path / 'best_acc_iter_4.pth').read_bytes()

    runner.iter, runner.kill_in_save = 6, True  # a better score again; the save is killed
    with pytest.raises(KeyboardInterrupt):
        hook.after_val_epoch(runner, {'acc': 0.8})
    assert sorted(os.listdir(tmp_path)) == ['best_acc_iter_4.pth']
    assert (tmp_path / 'best_acc_iter_4.pth').read_bytes() == saved


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / 'metrics.json'
    atomic_write(target, '{"old": 1}')
    with pytest.raises(RuntimeError):
        with atomic_open(target, 'w') as f:
            f.write('{"new": ')
            raise RuntimeError('killed mid-write')
    assert target.read_text() == '{"old": 1}'
    assert os.listdir(tmp_path) == ['metrics.json']  # the temporary file is removed
    atomic_write(target, b'{"new": 2}')
    assert target.read_text() == '{"new": 2}'


def test_two_process_run_with_a_killed_rank_stops_and_resumes(tmp_path, repo_root, venv_python,
                                                              tool_env, free_port):
    """One rank of a 2-process (gloo) run is killed: every rank stops, the rank and the cause
    are named, and --resume continues the 2-process run from its last checkpoint."""
    import socket
    work = tmp_path / 'dist'
    script = osp.join(repo_root, 'tools', 'dist_train.sh')
    cfg, marker = stalling_config(tmp_path, 'stall_rank1', base=TOY, after_iter=3, rank=1)
    env = dict(tool_env, PYTHON=venv_python, PORT=str(free_port))
    proc, out, err = kill_at(['bash', script, cfg, '2', '--work-dir', str(work)], marker, env,
                             repo_root)
    assert proc.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith('error: the 2-process run stopped on all ranks: rank 1'), err[-3000:]
    assert 'killed by signal 9 (SIGKILL)' in last and '--resume' in last
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_2.pth']
    assert not list(work.glob('rank*.done'))  # no rank ran on to the end

    with socket.socket() as s:  # a fresh port: the first master's may still be in TIME_WAIT
        s.bind(('127.0.0.1', 0))
        env['PORT'] = str(s.getsockname()[1])
    proc = subprocess.run(['bash', script, TOY, '2', '--work-dir', str(work), '--resume'],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    for rank in (0, 1):
        assert (work / f'rank{rank}.done').read_text().split() == [
            'world_size=2', 'iter=4', 'group_open_at_exit=False']
    assert load_checkpoint_file(work / 'iter_4.pth')['meta']['iter'] == 4
