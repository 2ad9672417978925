"""How the suite itself runs: ``make test`` in two pytest-xdist processes of one thread each,
and ``run_tool_each`` (tests/conftest.py), which runs several command lines in one process."""
import os.path as osp
import re
import subprocess
import textwrap

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _make_target(name):
    with open(osp.join(REPO, 'Makefile')) as f:
        text = f.read()
    return re.search(rf'^{name}:.*\n((?:\t.*\n)+)', text, re.M).group(1), text


def test_make_test_runs_two_workers_a_file_each():
    """Two processes (a 2-core machine), one test file per process at a time, so that a
    module's trained model is computed once; the set-up installs and checks pytest-xdist."""
    recipe, text = _make_target('test')
    assert re.search(r'-m pytest tests .*-n \$\(TEST_WORKERS\) --dist loadfile', recipe), recipe
    assert re.search(r'^TEST_WORKERS \?= 2$', text, re.M)
    with open(osp.join(REPO, 'tools', 'setup_env.sh')) as f:
        setup = f.read()
    assert re.search(r'^"\$\{PIP\[@\]\}" .*\bpytest-xdist\b', setup, re.M)
    assert '"xdist"' in setup  # check_all: a venv without it is not taken as complete


def test_workers_run_one_thread_and_their_own_inductor_cache(tmp_path, venv_python, tool_env):
    """Two xdist workers with this suite's conftest: one torch thread each, and inductor
    caches that do not collide."""
    for name in ('a', 'b'):
        (tmp_path / f'test_{name}.py').write_text(textwrap.dedent(f'''
            import os, torch
            def test_report():
                with open({str(tmp_path / f'{name}.txt')!r}, 'w') as f:
                    f.write(' '.join([os.environ['PYTEST_XDIST_WORKER'],
                                      str(torch.get_num_threads()),
                                      os.environ['TORCHINDUCTOR_CACHE_DIR']]))
        '''))
    # a fresh run's environment (this test may itself run in an xdist worker)
    env = {k: v for k, v in tool_env.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS',
                                                          'TORCHINDUCTOR_CACHE_DIR')
           and not k.startswith('PYTEST_XDIST')}
    env['PYTHONPATH'] = osp.join(REPO, 'tests') + osp.pathsep + env['PYTHONPATH']
    proc = subprocess.run([venv_python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           '-p', 'conftest', '-n', '2', '--dist', 'loadfile', str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [(tmp_path / f'{name}.txt').read_text().split() for name in ('a', 'b')]
    assert {worker for worker, _, _ in reports} == {'gw0', 'gw1'}, reports
    assert [threads for _, threads, _ in reports] == ['1', '1'], reports
    caches = {cache for _, _, cache in reports}
    # (under ATEN_CPU_CAPABILITY, import mmsnn adds a folder per ISA below the worker's)
    assert len(caches) == 2 and all(f'xdist_{w}' in c.split(osp.sep)
                                    for w, _, c in reports), reports


def test_run_tool_each_keeps_each_runs_status_and_output_apart(tmp_path, run_tool_each):
    """Exit status, stdout and stderr per run, also what a logger bound to the original
    streams writes and what a run writes before an error."""
    script = tmp_path / 'tool.py'
    script.write_text(textwrap.dedent('''
        import logging, sys
        log = logging.getLogger('suite_probe')
        if not log.handlers:  # made by the first run, with the streams of that moment
            log.addHandler(logging.StreamHandler(sys.stdout))
            log.setLevel(logging.INFO)
        log.info('logged by ' + sys.argv[1])
        if sys.argv[1] == 'bad':
            sys.stderr.write('error: bad input\\n')
            raise SystemExit(2)
        print('printed by ' + sys.argv[1])
    '''))
    good, bad, again = run_tool_each([(str(script), ['good']), (str(script), ['bad']),
                                      (str(script), ['again'])])
    assert (good.returncode, bad.returncode, again.returncode) == (0, 2, 0)
    assert good.stdout == 'logged by good\nprinted by good\n' and good.stderr == ''
    assert bad.stdout == 'logged by bad\n' and bad.stderr == 'error: bad input\n'
    assert again.stdout == 'logged by again\nprinted by again\n'


def test_longest_files_are_handed_out_first():
    """`make test` keeps the collection order (no reordering by test count), and the conftest
    puts the longest files first, each file's tests in their order; the list names real files."""
    import types

    import conftest
    recipe, _ = _make_target('test')
    assert '--no-loadscope-reorder' in recipe
    for path in conftest.LONGEST_FILES:
        assert osp.isfile(osp.join(REPO, 'tests', path)), path

    def item(path, name):
        return types.SimpleNamespace(fspath=osp.join(REPO, 'tests', path), fixturenames=(),
                                     name=name, add_marker=lambda marker: None)
    items = [item('test_registry.py', 'a'), item('test_tools/test_front_door.py', 'b'),
             item('test_registry.py', 'c'), item('test_engine/test_compile.py', 'd'),
             item('test_tools/test_front_door.py', 'e')]
    conftest.pytest_collection_modifyitems(None, items)
    assert [i.name for i in items] == ['d', 'b', 'e', 'a', 'c']


def test_warm_tool_runs_start_with_no_mmsnn_module_and_new_random_states(tmp_path,
                                                                         run_tool_each,
                                                                         run_tool):
    """A run in a fork of the warm interpreter finds the third-party toolboxes imported, but
    not mmsnn or the tests' toy modules (their import-time registration is part of what the
    tool tests check), nothing an earlier request did, and random states of its own (an
    unseeded training draws its seed from numpy); each request is a new fork, which ends with
    an interpreter's exit steps (its atexit functions run)."""
    script = tmp_path / 'probe.py'
    script.write_text(textwrap.dedent('''
        import os, sys
        print(sorted(m for m in ('mmsnn', 'mmsnn_toy', 'mmdet.models', 'torch')
                     if m in sys.modules))
        print(os.environ.get('PROBE_LEFT_BY_A_RUN'), os.getcwd(), sys.argv[1:])
        os.environ['PROBE_LEFT_BY_A_RUN'] = 'yes'
        import atexit, numpy, torch, mmsnn, mmsnn_toy  # noqa
        print(numpy.random.randint(1 << 30), torch.initial_seed())
        atexit.register(lambda: open(sys.argv[0] + '.' + sys.argv[1], 'w').close())
    '''))
    first, second = run_tool_each([(str(script), ['a']), (str(script), ['b'])])
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:2] == [
        "['mmdet.models', 'torch']", f"None {REPO} ['a']"]
    # the second run of one request shares its process (run_tool_each's contract) ...
    assert second.stdout.splitlines()[1] == f"yes {REPO} ['b']"
    # ... a new request does not
    again = run_tool(str(script), 'c')
    assert again.stdout.splitlines()[:2] == ["['mmdet.models', 'torch']", f"None {REPO} ['c']"]
    seeds = [first.stdout.splitlines()[2].split(), again.stdout.splitlines()[2].split()]
    assert seeds[0][0] != seeds[1][0] and seeds[0][1] != seeds[1][1], seeds
    # the interpreter's exit ran (what a tool leaves to atexit is there when the run returns)
    assert sorted(p.name for p in tmp_path.glob('probe.py.*')) == ['probe.py.b', 'probe.py.c']


def test_warm_tool_run_that_kills_its_process_gives_its_status_and_output(tmp_path,
                                                                         run_tool):
    """A run that ends its process (``os._exit``, a signal) gives the exit status a new
    process would, and the output it wrote; the next run works."""
    script = tmp_path / 'dies.py'
    script.write_text(textwrap.dedent('''
        import os, signal, sys
        print('before', flush=True)
        sys.stderr.write('last words\\n')
        sys.stderr.flush()
        if sys.argv[1] == 'exit':
            os._exit(5)
        os.kill(os.getpid(), signal.SIGKILL)
    '''))
    exited, killed = run_tool(str(script), 'exit'), run_tool(str(script), 'kill')
    assert (exited.returncode, exited.stdout, exited.stderr) == (5, 'before\n', 'last words\n')
    assert (killed.returncode, killed.stdout) == (-9, 'before\n')
    (tmp_path / 'ok.py').write_text('print("ok")\n')
    assert run_tool(str(tmp_path / 'ok.py')).stdout == 'ok\n'


def test_warm_tool_run_past_its_timeout_is_killed_with_its_children(tmp_path, run_tool):
    """A run past its timeout raises TimeoutExpired as subprocess.run does, its process group
    (a process it started too) is killed, and the next run works."""
    import time

    import pytest
    pid_file = tmp_path / 'child.pid'
    (tmp_path / 'slow.py').write_text(textwrap.dedent(f'''
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
        open({str(pid_file)!r}, 'w').write(str(child.pid))
        time.sleep(600)
    '''))
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool(str(tmp_path / 'slow.py'), timeout=4)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _is_running(child) and time.monotonic() < deadline:
        time.sleep(0.05)  # killed; then reaped by init
    assert not _is_running(child)
    (tmp_path / 'ok.py').write_text('print("ok")\n')
    assert run_tool(str(tmp_path / 'ok.py')).stdout == 'ok\n'


def _is_running(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False
