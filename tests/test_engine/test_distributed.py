"""tools/dist_train.sh: 2-process runs of the toy config, then a 1-process resume.

The runs take the machine's path: NCCL when it has two GPUs, else gloo on the CPU (a machine
with one GPU hides it from these runs: two NCCL ranks cannot share one device).
"""
import os
import os.path as osp
import signal
import socket
import subprocess

import torch

from mmsnn.utils.checkpoint_io import load_checkpoint_file

TOY = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'toy_config.py')


def _dist_env(tool_env, venv_python, port):
    env = dict(tool_env, PYTHON=venv_python, PORT=str(port))
    if torch.cuda.is_available() and torch.cuda.device_count() < 2:
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


def _output(proc):
    """The ends of a run's stdout (where the ranks log how far they got) and stderr, for a
    failed assertion: stderr alone does not say whether a rank stopped mid-run or at exit."""
    return (f'--- stdout (end) ---\n{proc.stdout[-3000:]}\n'
            f'--- stderr (end) ---\n{proc.stderr[-5000:]}')


def test_two_process_training_then_single_process_resume(repo_root, venv_python, tool_env,
                                                          run_tool, free_port, tmp_path):
    work_dir = tmp_path / 'dist'
    env = _dist_env(tool_env, venv_python, free_port)
    proc = subprocess.run(
        ['bash', osp.join(repo_root, 'tools', 'dist_train.sh'), TOY, '2', '--work-dir',
         str(work_dir)], cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _output(proc)
    # both ranks ran to the end, in one world of 2
    for rank in (0, 1):
        assert (work_dir / f'rank{rank}.done').read_text().split() == [
            'world_size=2', 'iter=4', 'group_open_at_exit=False']
    # only the master writes checkpoints: one per interval
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth', 'iter_4.pth']
    assert load_checkpoint_file(work_dir / 'iter_4.pth')['meta']['iter'] == 4

    # a bad input in a distributed run: one message, exit status 2, no torchrun report
    before = {p.name: p.stat().st_mtime_ns for p in work_dir.iterdir()}
    proc = subprocess.run(
        ['bash', osp.join(repo_root, 'tools', 'dist_train.sh'), TOY, '2', '--work-dir',
         str(work_dir)], cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-5000:]
    assert proc.stderr.count('error: ') == 1 and 'already holds checkpoints' in proc.stderr
    assert 'Traceback' not in proc.stderr and 'ChildFailedError' not in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in work_dir.iterdir()} == before

    # the 2-process checkpoint resumes in one process
    proc = run_tool('tools/train.py', TOY, '--work-dir', work_dir, '--resume',
                    work_dir / 'iter_4.pth', '--cfg-options', 'train_cfg.max_iters=6')
    assert proc.returncode == 0, _output(proc)
    assert 'resumed epoch: 0, iter: 4' in proc.stdout + proc.stderr
    assert (work_dir / 'rank0.done').read_text().split() == [
        'world_size=1', 'iter=6', 'group_open_at_exit=False']
    assert load_checkpoint_file(work_dir / 'iter_6.pth')['meta']['iter'] == 6

    # a 2-process test of that checkpoint: the master alone reports and saves the metrics
    test_dir = tmp_path / 'dist_test'
    proc = subprocess.run(
        ['bash', osp.join(repo_root, 'tools', 'dist_test.sh'), TOY, str(work_dir / 'iter_6.pth'),
         '2', '--work-dir', str(test_dir)], cwd=repo_root, env=env, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, _output(proc)
    assert proc.stdout.count('metrics saved to') == 1, proc.stdout[-3000:]
    assert (test_dir / 'metrics.json').is_file()


def test_two_process_training_with_a_backbone_that_stops_early(repo_root, venv_python, tool_env,
                                                               free_port, tmp_path):
    """out_indices=(2,): the stages after tap 2 would get no gradient, and DDP (with
    find_unused_parameters=False) stops at the second iteration if they exist."""
    work_dir = tmp_path / 'short'
    proc = subprocess.run(
        ['bash', osp.join(repo_root, 'tools', 'dist_train.sh'), TOY, '2', '--work-dir',
         str(work_dir), '--cfg-options', 'model.backbone.out_indices=[2]',
         'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=3'],
        cwd=repo_root, env=_dist_env(tool_env, venv_python, free_port), capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, _output(proc)
    for rank in (0, 1):
        assert (work_dir / f'rank{rank}.done').read_text().split() == [
            'world_size=2', 'iter=3', 'group_open_at_exit=False']
    ckpt = load_checkpoint_file(work_dir / 'iter_3.pth')
    keys = ckpt['state_dict']
    assert 'backbone.ConvBlock2_2.0.conv1.weight' in keys
    assert not any(k.startswith('backbone.block3.') for k in keys)


def _launch_node(repo_root, env, node_rank, log_dir, *args):
    """One machine of a multi-machine run: tools/dist_train.sh with NNODES=2, NODE_RANK."""
    env = dict(env, NNODES='2', NODE_RANK=str(node_rank), MASTER_ADDR='127.0.0.1')
    with open(log_dir / f'node{node_rank}.out', 'w') as out, \
            open(log_dir / f'node{node_rank}.err', 'w') as err:
        return subprocess.Popen(
            ['bash', osp.join(repo_root, 'tools', 'dist_train.sh'), TOY, '1', *map(str, args)],
            cwd=repo_root, env=env, stdout=out, stderr=err, start_new_session=True)


def _run_two_nodes(repo_root, env, log_dir, *args):
    """Both machines at once (each waits for the other); returns their (rc, stdout, stderr)."""
    log_dir.mkdir(exist_ok=True)
    procs = [_launch_node(repo_root, env, rank, log_dir, *args) for rank in (0, 1)]
    try:
        for proc in procs:
            proc.wait(timeout=300)
    finally:
        for proc in procs:
            if proc.poll() is None:  # a node left hanging: stop what this test started
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [(proc.returncode, (log_dir / f'node{rank}.out').read_text(),
             (log_dir / f'node{rank}.err').read_text()) for rank, proc in enumerate(procs)]


def _another_free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_machine_training_then_resume_on_two_machines(repo_root, venv_python, tool_env,
                                                           free_port, tmp_path):
    """A 2-machine run simulated on this one: dist_train.sh twice, NNODES=2 with NODE_RANK=0
    and 1, the master on 127.0.0.1; both processes form one world of 2. Then the same two
    commands with --resume continue it."""
    work_dir = tmp_path / 'nodes'
    env = _dist_env(tool_env, venv_python, free_port)
    results = _run_two_nodes(repo_root, env, tmp_path / 'run1', '--work-dir', work_dir)
    for rc, _, err in results:
        assert rc == 0, err[-5000:]
    for rank in (0, 1):
        assert (work_dir / f'rank{rank}.done').read_text().split() == [
            'world_size=2', 'iter=4', 'group_open_at_exit=False']
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth', 'iter_4.pth']

    env = _dist_env(tool_env, venv_python, _another_free_port())
    results = _run_two_nodes(repo_root, env, tmp_path / 'run2', '--work-dir', work_dir,
                             '--resume', '--cfg-options', 'train_cfg.max_iters=6')
    for rc, _, err in results:
        assert rc == 0, err[-5000:]
    master_log = results[0][1] + results[0][2]
    assert 'resumed epoch: 0, iter: 4' in master_log, master_log[-3000:]
    for rank in (0, 1):
        assert (work_dir / f'rank{rank}.done').read_text().split() == [
            'world_size=2', 'iter=6', 'group_open_at_exit=False']
    assert load_checkpoint_file(work_dir / 'iter_6.pth')['meta']['iter'] == 6


def test_dist_scripts_check_the_machines_before_starting(repo_root, venv_python, tool_env,
                                                         tmp_path):
    """A wrong NODE_RANK / a missing MASTER_ADDR: one line at once, instead of torchrun
    waiting 10 minutes for the other machines."""
    script = osp.join(repo_root, 'tools', 'dist_train.sh')
    for extra, message in ((dict(NNODES='two'), 'NNODES must be a positive number'),
                           (dict(NNODES='2', NODE_RANK='2'), 'NODE_RANK=2 is not below NNODES=2'),
                           (dict(NNODES='2', NODE_RANK='1'), 'NODE_RANK=1 needs MASTER_ADDR')):
        proc = subprocess.run(['bash', script, TOY, '1', '--work-dir', str(tmp_path / 'w')],
                              env=dict(tool_env, PYTHON=venv_python, **extra),
                              capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2 and f'error: {message}' in proc.stderr, proc.stderr[-3000:]
        assert not (tmp_path / 'w').exists()


def test_dist_scripts_reject_bad_arguments(repo_root, tmp_path):
    script = osp.join(repo_root, 'tools', 'dist_train.sh')
    proc = subprocess.run(['bash', script, str(tmp_path / 'none.py'), '2'],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and 'error: config file' in proc.stderr
    proc = subprocess.run(['bash', osp.join(repo_root, 'tools', 'dist_test.sh'), TOY,
                           str(tmp_path / 'none.pth'), '2'],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and 'error: checkpoint' in proc.stderr


def test_two_process_seg_training(repo_root, venv_python, tool_env, free_port, tmp_path):
    """A seg config trains in 2 processes on any machine: every part of the
    segmentor, decode head included, uses the config's one norm (BN; mmseg's SyncBN, which
    refuses CPU tensors, is no longer inherited by the head alone)."""
    from mmsnn.datasets.demo_ade import generate_demo_ade
    root = tmp_path / 'demo_ade'
    generate_demo_ade(str(root), num_train=4, num_val=1, image_size=(64, 64))
    work_dir = tmp_path / 'seg'
    opts = [f'data_root={root}', 'train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    proc = subprocess.run(
        ['bash', osp.join(repo_root, 'tools', 'dist_train.sh'),
         osp.join(repo_root, 'configs', 'seg', 'demo', 'sdt_srb_demo.py'), '2',
         '--work-dir', str(work_dir), '--cfg-options', *opts],
        cwd=repo_root, env=_dist_env(tool_env, venv_python, free_port), capture_output=True,
        text=True, timeout=400)
    assert proc.returncode == 0, _output(proc)
    assert load_checkpoint_file(work_dir / 'iter_2.pth')['meta']['iter'] == 2
