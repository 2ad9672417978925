# Shared pytest fixtures for mmsnn's tests. Several test files use this: keep it small, add
# only fixtures that more than one file needs, and give each a one-line docstring.
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

#: the pytest-xdist worker this process is ('gw0', 'gw1', ...; '' without xdist)
WORKER = os.environ.get('PYTEST_XDIST_WORKER', '')
# Set before torch is imported (the import below loads it), so that this process and every
# process a test starts without ``tool_env`` run one thread: ``make test`` runs two workers on
# a 2-core machine, and more threads per worker would oversubscribe the cores.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
if WORKER:
    # inductor's on-disk cache (generated C++ and its builds) per worker, under the one the
    # run was given or inductor's default: two workers compiling the same graph at once would
    # otherwise write the same files
    import getpass
    import tempfile
    _inductor = os.environ.get('TORCHINDUCTOR_CACHE_DIR') or osp.join(
        tempfile.gettempdir(), f'torchinductor_{getpass.getuser()}')
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = osp.join(_inductor, f'xdist_{WORKER}')

from mmsnn.analysis.seed_sweep import KERNEL_FAMILIES  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEST_DATA = osp.join(REPO_ROOT, 'tests', 'data')
if TEST_DATA not in sys.path:  # toy modules for in-process tests (mmsnn_toy)
    sys.path.insert(0, TEST_DATA)


@pytest.fixture(autouse=True, scope='session')
def one_thread():
    """All tests use tiny tensors, where OpenMP threads only add overhead (up to 20x on a
    busy 2-core machine); subprocesses get OMP_NUM_THREADS=1 through ``tool_env``."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='session')
def repo_root():
    """Absolute path of the repository checkout."""
    return REPO_ROOT


@pytest.fixture(scope='session')
def venv_python():
    """The project's python (./.venv/bin/python when present, else the one running pytest)."""
    venv = osp.join(REPO_ROOT, '.venv', 'bin', 'python')
    return venv if os.access(venv, os.X_OK) else sys.executable


@pytest.fixture(scope='session')
def tool_env():
    """Environment for running tools/*.py in a subprocess: repo + tests/data on PYTHONPATH,
    one thread per process."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT, TEST_DATA] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(key, None)
    return env


#: the x86 kernel family every machine of this kind can run: torch's ATen and oneDNN kernels
#: and MKL's BLAS pinned to AVX2, so a seeded float32 training gives the same numbers on an
#: AVX2-only CPU, on one with AVX-512 and on one with AMX (unpinned, one flipped spike early in
#: a short training moved the det regression's AP50 from 0.085 to 0.023 or 0.005)
PINNED_KERNELS = KERNEL_FAMILIES['avx2']


@pytest.fixture(scope='session')
def pinned_kernel_env(tool_env):
    """``tool_env`` with :data:`PINNED_KERNELS`, for seeded learning tests run in a subprocess
    (the settings are read when torch starts). Skips where the CPU has no AVX2 (the thresholds
    of those tests were measured with these kernels)."""
    try:
        with open('/proc/cpuinfo') as f:
            avx2 = any(line.startswith('flags') and ' avx2' in line for line in f)
    except OSError:
        avx2 = False
    if not avx2:
        pytest.skip('seeded learning tests pin the x86 AVX2 kernels; this CPU has no AVX2')
    return dict(tool_env, **PINNED_KERNELS)


@pytest.fixture(scope='session')
def run_tool(venv_python, tool_env):
    """run_tool('tools/train.py', *args, timeout=...) -> CompletedProcess (cwd: repo root)."""

    def run(script, *args, timeout=300, env=None):
        cmd = [venv_python, osp.join(REPO_ROOT, script)] + [str(a) for a in args]
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env or tool_env, capture_output=True,
                              text=True, timeout=timeout)

    return run


#: runs each [script, argv] of a JSON list as a program (``__main__``; ``-m NAME`` a module as
#: ``python -m`` does) in this one interpreter and prints, as the last line, a JSON list of
#: [exit status, stdout, stderr] per run. sys.path[0] is what ``python`` gives a script (its
#: folder) or a module (the cwd). The output is redirected at the file descriptors, so that
#: loggers and C code that hold the original streams are caught too.
_EACH_RUN = r'''
import json, os, runpy, sys, tempfile, traceback
saved, results = (os.dup(1), os.dup(2)), []
for script, argv in json.loads(sys.argv[1]):
    files = tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(files[0].fileno(), 1), os.dup2(files[1].fileno(), 2)
    sys.argv = [script] + argv
    sys.path[0] = os.getcwd() if script.startswith('-m ') else os.path.dirname(script)
    try:
        if script.startswith('-m '):
            runpy.run_module(script[3:], run_name='__main__', alter_sys=True)
        else:
            runpy.run_path(script, run_name='__main__')
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(saved[0], 1), os.dup2(saved[1], 2)
    for f in files:
        f.seek(0)
    results.append([code, files[0].read(), files[1].read()])
print(json.dumps(results))
'''


@pytest.fixture(scope='session')
def run_tool_each(venv_python, tool_env):
    """run_tool_each([(script, argv), ...], env=None) -> [CompletedProcess, ...]: each script
    (a path under the repo, or ``-m module``) run as a program with its argv, in this order,
    all in one new process (cwd: repo root; env: ``tool_env`` unless given): checks of several
    command lines pay the start-up of torch and the toolboxes once. Only for runs that leave
    no state behind that a later run would read."""

    def run(runs, timeout=300, env=None):
        runs = [(script if script.startswith('-m ') else osp.join(REPO_ROOT, script),
                 [str(a) for a in argv]) for script, argv in runs]
        proc = subprocess.run([venv_python, '-c', _EACH_RUN, json.dumps(runs)], cwd=REPO_ROOT,
                              env=env or tool_env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(proc.stdout.strip().splitlines()[-1])
        return [subprocess.CompletedProcess([script] + argv, code, out, err)
                for (script, argv), (code, out, err) in zip(runs, results)]

    return run


@pytest.fixture
def free_port():
    """A TCP port that was free a moment ago (for torchrun's master)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


#: fixtures that start a process (a tool, torchrun, a build) or train through one: a test that
#: uses one (directly or through another fixture) is an end-to-end test
PROCESS_FIXTURES = frozenset({'run_tool', 'run_tool_each', 'venv_python', 'tool_env',
                              'pinned_kernel_env', 'free_port'})


#: the test files that take longest (seconds of their slowest tests in one run of
#: `pytest --durations=60` on a 2-core AMD EPYC [avx2], the slowest machine of this kind):
#: `make test` hands these out first (`--no-loadscope-reorder` keeps this order), so that the
#: two workers end together instead of one running a long file alone at the end
LONGEST_FILES = {
    'test_engine/test_compile.py': 354, 'test_engine/test_distributed.py': 141,
    'test_models/test_detector.py': 126, 'test_datasets/test_custom_dataset.py': 124,
    'test_engine/test_checkpoint_resume.py': 115, 'test_datasets/test_bad_data.py': 110,
    'test_tools/test_front_door.py': 84, 'test_models/test_segmentor.py': 67,
    'test_analysis/test_cost_of_spiking.py': 59, 'test_tools/test_install.py': 55,
    'test_analysis/test_erf.py': 52, 'test_analysis/test_energy.py': 51,
    'test_tools/test_train_test.py': 50, 'test_analysis/test_seed_sweep.py': 43,
    'test_analysis/test_gpu_check.py': 39, 'test_deploy/test_convert_for_inference.py': 38,
    'test_engine/test_compile_for_inference.py': 34, 'test_analysis/test_erf_models.py': 33,
}


def pytest_collection_modifyitems(config, items):
    """Mark the end-to-end tests ``slow`` (``pytest -m "not slow"`` runs the unit tests alone,
    ``make test`` and CI run everything): every test that starts a process, and the in-process
    trainings marked by hand with ``@pytest.mark.slow``. Then order the files longest first
    (:data:`LONGEST_FILES`; the others keep their order after them)."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.slow)

    def weight(item):
        path = osp.relpath(str(item.fspath), osp.join(REPO_ROOT, 'tests')).replace(osp.sep, '/')
        return -LONGEST_FILES.get(path, 0)
    items.sort(key=weight)  # stable: a file's tests keep their order
