# Shared pytest fixtures for mmsnn's tests. Several test files use this: keep it small, add
# only fixtures that more than one file needs, and give each a one-line docstring.
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import tempfile

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


#: runs tool command lines as programs, fresh or in a warm interpreter (see its docstring)
TOOL_RUNS = osp.join(TEST_DATA, 'tool_runs.py')


class _WarmTools:
    """This worker's warm interpreter (``tool_runs.py --serve``), started at its first use;
    each request is done by a forked child of it. Not for two threads at once."""

    def __init__(self, venv_python, env):
        self.venv_python, self.env, self.proc = venv_python, env, None

    def run(self, runs, timeout):
        """[(abs script, argv), ...] -> (exit status of the child, [[status, stdout, stderr]
        of each run that started]); raises subprocess.TimeoutExpired past ``timeout`` seconds
        (the runs' process group killed). A child that died in a run (killed, crashed,
        ``os._exit``) gives that run its exit status and the output it had written."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([self.venv_python, TOOL_RUNS, '--serve'],
                                         cwd=REPO_ROOT, env=self.env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            assert self._reply()['status'] == 'ready'
        with tempfile.TemporaryDirectory() as out_dir:
            try:
                self.proc.stdin.write(json.dumps(dict(runs=runs, cwd=REPO_ROOT, timeout=timeout,
                                                      out_dir=out_dir)) + '\n')
                self.proc.stdin.flush()
                reply = self._reply()
            except BaseException:  # a reply may still come: the next request would read it
                self.close(kill=True)
                raise
            if reply['status'] == 'timeout':
                raise subprocess.TimeoutExpired([r[0] for r in runs], timeout)
            if reply['status'] == 'done':
                with open(osp.join(out_dir, 'result.json')) as f:
                    return 0, json.load(f)
            results = []
            for i in range(len(runs)):
                if not osp.isfile(osp.join(out_dir, f'{i}.out')):
                    break
                results.append([reply['exit'], _read(out_dir, f'{i}.out'),
                                _read(out_dir, f'{i}.err')])
            assert results, (f'the forked tool process died ({reply}) before a run:\n'
                             + _read(out_dir, 'child.log'))
            return reply['exit'], results

    def _reply(self):
        line = self.proc.stdout.readline()
        assert line, 'the warm tool interpreter exited'
        return json.loads(line)

    def close(self, kill=False):
        if self.proc is not None and self.proc.poll() is None:
            if not kill:
                self.proc.stdin.close()
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _read(*path):
    with open(osp.join(*path)) as f:
        return f.read()


def _script_path(script):
    """A tool script as ``tool_runs.py`` takes it: an absolute path (relative ones are under
    the repo root), or ``-m NAME`` for a module."""
    return script if script.startswith('-m ') else osp.join(REPO_ROOT, script)


@pytest.fixture(scope='session')
def warm_tools(venv_python, tool_env):
    """This worker's warm tool interpreter: ``run_tool`` and ``run_tool_each`` use it for
    runs in ``tool_env``; a run in another environment (pinned kernels, say: torch reads them
    as it starts) gets a fresh process."""
    tools = _WarmTools(venv_python, tool_env)
    yield tools
    tools.close()


def _tool_runs(runs, timeout, env, venv_python, warm_tools):
    """(script, argv) runs -> [CompletedProcess, ...]: all in one fork of the warm
    interpreter, or with an ``env`` in one new process. As a new process would, a run that
    kills its process fails the test."""
    runs = [(_script_path(script), [str(a) for a in argv]) for script, argv in runs]
    if env is None:
        exit_code, results = warm_tools.run(runs, timeout)
        assert exit_code == 0, f'exit status {exit_code}: {results[-1][2][-3000:]}'
    else:
        cmd = [venv_python, TOOL_RUNS, json.dumps(runs)]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(proc.stdout.strip().splitlines()[-1])
    return [subprocess.CompletedProcess([script] + argv, code, out, err)
            for (script, argv), (code, out, err) in zip(runs, results)]


@pytest.fixture(scope='session')
def run_tool(venv_python, tool_env, warm_tools):
    """run_tool('tools/train.py', *args, timeout=..., env=None, fresh=False) ->
    CompletedProcess (cwd: repo root): the script run as a program, in a fork of this
    worker's warm interpreter (~7 s less start-up per run), or with ``fresh=True`` or an
    ``env`` in a new ``python`` process, as a user starts it."""

    def run(script, *args, timeout=300, env=None, fresh=False):
        script, args = _script_path(script), [str(a) for a in args]
        if env is None and not fresh:
            _, results = warm_tools.run([(script, args)], timeout)
            return subprocess.CompletedProcess([script] + args, *results[0])
        cmd = [venv_python] + (['-m', script[3:]] if script.startswith('-m ') else [script]) + args
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env or tool_env, capture_output=True,
                              text=True, timeout=timeout)

    return run


@pytest.fixture(scope='session')
def run_tool_each(venv_python, tool_env, warm_tools):
    """run_tool_each([(script, argv), ...], env=None) -> [CompletedProcess, ...]: each script
    (a path under the repo, or ``-m module``) run as a program with its argv, in this order,
    all in one process (a fork of the warm interpreter; with ``env``, a new process; cwd:
    repo root): checks of several command lines pay the start-up once. Only for runs that
    leave no state behind that a later run would read."""

    def run(runs, timeout=300, env=None):
        return _tool_runs(runs, timeout, env, venv_python, warm_tools)

    return run


@pytest.fixture
def free_port():
    """A TCP port that was free a moment ago (for torchrun's master)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


#: fixtures that start a process (a tool, torchrun, a build) or train through one: a test that
#: uses one (directly or through another fixture) is an end-to-end test
PROCESS_FIXTURES = frozenset({'run_tool', 'run_tool_each', 'warm_tools', 'venv_python',
                              'tool_env', 'pinned_kernel_env', 'free_port'})


#: the test files that take longest (seconds of their tests, setup included, in one run of
#: `pytest --durations=0` on a 2-core AMD EPYC [avx2], the slowest machine of this kind):
#: `make test` hands these out first (`--no-loadscope-reorder` keeps this order), so that the
#: two workers end together instead of one running a long file alone at the end
LONGEST_FILES = {
    'test_engine/test_compile.py': 281, 'test_engine/test_distributed.py': 166,
    'test_models/test_detector.py': 146, 'test_engine/test_checkpoint_resume.py': 86,
    'test_models/test_segmentor.py': 69, 'test_datasets/test_custom_dataset.py': 69,
    'test_tools/test_install.py': 48, 'test_datasets/test_bad_data.py': 47,
    'test_tools/test_front_door.py': 46, 'test_analysis/test_seed_sweep.py': 44,
    'test_models/test_reference_conversion.py': 35, 'test_analysis/test_cost_of_spiking.py': 35,
    'test_deploy/test_convert_for_inference.py': 32,
    'test_configs/test_spiking_transformer_configs.py': 31,
    'test_models/test_backbones/test_with_cp.py': 31,
    'test_engine/test_compile_for_inference.py': 29, 'test_suite.py': 26,
    'test_analysis/test_benchmark_processes.py': 25, 'test_tools/test_train_test.py': 25,
    'test_analysis/test_gpu_check.py': 21
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
