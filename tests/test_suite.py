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
    assert len(caches) == 2 and all(c.endswith(f'xdist_{w}') for w, _, c in reports), reports


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
