"""tools/slurm_train.sh and slurm_test.sh without a slurm cluster: syntax, the srun command
they print with DRY_RUN=1, the one they run (a stand-in srun on PATH records its arguments),
and their checks of bad input."""
import os
import os.path as osp
import shlex
import subprocess

import pytest

TOY = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'toy_config.py')
SCRIPTS = ('slurm_train.sh', 'slurm_test.sh', '_slurm_launch.sh')


def _run(repo_root, script, *args, env=None, **extra_env):
    env = dict(os.environ if env is None else env, **extra_env)
    return subprocess.run(['bash', osp.join(repo_root, 'tools', script), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=60)


def _srun_options(gpus, per_node):
    return ['srun', '-p', 'gpu_part', '--job-name=snn', f'--gres=gpu:{per_node}',
            f'--ntasks={gpus}', f'--ntasks-per-node={per_node}', '--cpus-per-task=5',
            '--kill-on-bad-exit=1']


@pytest.mark.parametrize('script', SCRIPTS)
def test_slurm_scripts_parse(repo_root, script):
    proc = subprocess.run(['bash', '-n', osp.join(repo_root, 'tools', script)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_slurm_train_dry_run_prints_the_srun_command(repo_root, tmp_path):
    proc = _run(repo_root, 'slurm_train.sh', 'gpu_part', 'snn', TOY, tmp_path / 'work dir',
                '--cfg-options', 'train_cfg.max_iters=8', '--resume', DRY_RUN='1', GPUS='16',
                GPUS_PER_NODE='8', SRUN_ARGS='--time=24:00:00 --qos=high',
                PYTHON='/opt/env/bin/python', PORT='29611', PYTHONPATH='/my/lib')
    assert proc.returncode == 0, proc.stderr
    words = shlex.split(proc.stdout)
    # every task gets the checkout first on PYTHONPATH and one master port
    assert words[:2] == [f'PYTHONPATH={repo_root}:/my/lib', 'MASTER_PORT=29611']
    assert words[2:] == _srun_options(16, 8) + [
        '--time=24:00:00', '--qos=high', '/opt/env/bin/python', '-u',
        osp.join(repo_root, 'tools', 'train.py'), TOY, '--work-dir', str(tmp_path / 'work dir'),
        '--cfg-options', 'train_cfg.max_iters=8', '--resume', '--launcher', 'slurm']


def test_slurm_test_dry_run_and_a_job_smaller_than_a_node(repo_root, tmp_path):
    ckpt = tmp_path / 'iter_4.pth'
    ckpt.write_bytes(b'')
    proc = _run(repo_root, 'slurm_test.sh', 'gpu_part', 'snn', TOY, ckpt, '--out', 'r.pkl',
                DRY_RUN='1', GPUS='2', PYTHON='py')
    assert proc.returncode == 0, proc.stderr
    words = shlex.split(proc.stdout)
    assert words[1] == 'MASTER_PORT=29500'
    # 2 GPUs of an 8-GPU node: the job asks for 2, not for the node's 8
    assert words[2:] == _srun_options(2, 2) + [
        'py', '-u', osp.join(repo_root, 'tools', 'test.py'), TOY, str(ckpt), '--out', 'r.pkl',
        '--launcher', 'slurm']


def test_slurm_train_runs_srun(repo_root, tmp_path):
    """Without DRY_RUN the script runs srun itself (here a stand-in that records its
    arguments and environment)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'srun_args'
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$MASTER_PORT" "$@" > "$SRUN_RECORD"\n')
    srun.chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               SRUN_RECORD=str(record))
    env.pop('DRY_RUN', None)
    proc = _run(repo_root, 'slurm_train.sh', 'gpu_part', 'snn', TOY, tmp_path / 'w', env=env,
                GPUS='8', PYTHON='py')
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines() == ['29500'] + _srun_options(8, 8)[1:] + [
        'py', '-u', osp.join(repo_root, 'tools', 'train.py'), TOY, '--work-dir',
        str(tmp_path / 'w'), '--launcher', 'slurm']


def test_slurm_scripts_reject_bad_input(repo_root, tmp_path):
    env = dict(os.environ, DRY_RUN='1')
    proc = _run(repo_root, 'slurm_train.sh', 'p', 'j', tmp_path / 'none.py', tmp_path, env=env)
    assert proc.returncode == 2 and 'error: config file' in proc.stderr and not proc.stdout
    proc = _run(repo_root, 'slurm_test.sh', 'p', 'j', TOY, tmp_path / 'none.pth', env=env)
    assert proc.returncode == 2 and 'error: checkpoint' in proc.stderr and not proc.stdout
    proc = _run(repo_root, 'slurm_train.sh', 'p', 'j', TOY, tmp_path, env=env, GPUS='0')
    assert proc.returncode == 2 and 'error: GPUS must be a positive number' in proc.stderr
    proc = _run(repo_root, 'slurm_train.sh', 'p', 'j', TOY, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith('usage:')
    # no slurm here: one line saying so, and what to use instead
    no_srun = dict(os.environ, PATH=osp.dirname(subprocess.check_output(
        ['bash', '-c', 'command -v bash'], text=True).strip()))
    if subprocess.run(['bash', '-c', 'command -v srun'], env=no_srun,
                      capture_output=True).returncode == 0:
        pytest.skip('srun is installed next to bash here')
    proc = _run(repo_root, 'slurm_train.sh', 'p', 'j', TOY, tmp_path, env=no_srun)
    assert proc.returncode == 2 and 'error: srun not found' in proc.stderr
    assert 'tools/dist_train.sh' in proc.stderr
