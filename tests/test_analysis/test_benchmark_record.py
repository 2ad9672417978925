"""The benchmark guard: records written by the benchmark, and the comparison that
flags a figure more than 10% slower than the last record of the same CPU."""
import json
import os.path as osp

import pytest

from mmsnn.analysis.benchmark_record import (compare, last_record_of_cpu, load_records,
                                             make_record, write_record)

CPU_A = 'Some Xeon [avx2 avx512f]'
CPU_B = 'Some EPYC [avx2]'


def record(date, cpu, **figures):
    # hand-written, as a file under benchmarks/ would hold it
    return dict(date=date, commit='abc1234', cpu=cpu, torch='2.x', command='cmd',
                figures=figures)


def test_twelve_percent_slower_is_flagged_five_is_not():
    before = record('2026-01-01T00:00:00Z', CPU_A, train_s=10.0, infer_s=2.0, peak_mib=100.0)
    now = record('2026-01-02T00:00:00Z', CPU_A, train_s=11.2, infer_s=2.1, peak_mib=90.0)
    rows, slower = compare(now, before)
    assert slower == ['train_s']
    change = {name: c for name, _, _, c in rows}
    assert change['train_s'] == pytest.approx(0.12)
    assert change['infer_s'] == pytest.approx(0.05)
    assert change['peak_mib'] == pytest.approx(-0.10)


def test_figure_missing_in_one_record_is_not_compared():
    before = record('2026-01-01T00:00:00Z', CPU_A, train_s=10.0)
    now = record('2026-01-02T00:00:00Z', CPU_A, train_s=10.0, new_figure_s=99.0)
    rows, slower = compare(now, before)
    assert [r[0] for r in rows] == ['train_s'] and slower == []


def test_other_cpu_is_not_compared():
    old_a = record('2026-01-01T00:00:00Z', CPU_A, train_s=1.0)
    newer_b = record('2026-01-02T00:00:00Z', CPU_B, train_s=5.0)  # a slower CPU, later
    now_a = record('2026-01-03T00:00:00Z', CPU_A, train_s=1.05)
    assert last_record_of_cpu([old_a, newer_b, now_a], now_a) is old_a
    assert last_record_of_cpu([old_a, newer_b], newer_b) is None
    with pytest.raises(ValueError, match='different CPUs'):
        compare(newer_b, old_a)


def test_writer_fields(tmp_path):
    rec = make_record({'eager train s': 1.5, 'eager peak MiB': 300}, command='python x.py',
                      commit='0123abc', cpu=CPU_A, torch_version='9.9.9',
                      date='2026-03-04T05:06:07Z')
    path = write_record(rec, str(tmp_path / 'benchmarks'))
    assert osp.basename(path) == '20260304T050607Z-0123abc-some-xeon-avx2-avx512f.json'
    with open(path) as f:
        stored = json.load(f)
    assert stored == dict(date='2026-03-04T05:06:07Z', commit='0123abc', cpu=CPU_A,
                          torch='9.9.9', command='python x.py',
                          figures={'eager train s': 1.5, 'eager peak MiB': 300.0})
    assert [r['commit'] for r in load_records(str(tmp_path / 'benchmarks'))] == ['0123abc']


def test_writer_defaults_name_this_cpu_and_torch():
    import torch

    from mmsnn.utils.machine import cpu_description
    rec = make_record({'x': 1}, command='c', commit='c0ffee0')
    assert rec['cpu'] == cpu_description() and rec['torch'] == torch.__version__
    assert rec['date'].endswith('Z')


#: the command lines of the two tests below, run in one process (``cli_runs``)
CLI_RUNS = {'strict': ['--records', '{folder}', '--strict'],
            'not strict': ['--records', '{folder}'],
            'other cpu': ['{folder}/b.json', '--records', '{folder}', '--strict'],
            'missing': ['{empty}/nope.json', '--records', '{empty}', '--strict']}


@pytest.fixture(scope='module')
def cli_runs(tmp_path_factory, run_tool_each):
    """{name: CompletedProcess} of tools/analysis/compare_benchmarks.py for each of
    :data:`CLI_RUNS`, on a folder of three records (CPU_A slower by 15%, one of CPU_B) and on
    an empty folder."""
    folder = tmp_path_factory.mktemp('benchmarks')
    empty = tmp_path_factory.mktemp('empty')
    for name, rec in (('a.json', record('2026-01-01T00:00:00Z', CPU_A, train_s=10.0)),
                      ('b.json', record('2026-01-02T00:00:00Z', CPU_B, train_s=30.0)),
                      ('c.json', record('2026-01-03T00:00:00Z', CPU_A, train_s=11.5))):
        (folder / name).write_text(json.dumps(rec))
    procs = run_tool_each([('tools/analysis/compare_benchmarks.py',
                            [a.format(folder=folder, empty=empty) for a in argv])
                           for argv in CLI_RUNS.values()])
    return dict(zip(CLI_RUNS, procs), empty=empty)


def test_cli_strict_exit_status(cli_runs):
    out = cli_runs['strict']
    assert out.returncode == 1, out.stderr
    assert 'train_s' in out.stdout and 'SLOWER' in out.stdout and '+15.0%' in out.stdout
    assert cli_runs['not strict'].returncode == 0  # flagged, but not --strict
    # the CPU_B record has no earlier one of its CPU: nothing to compare, exit 0
    out = cli_runs['other cpu']
    assert out.returncode == 0 and 'nothing to compare' in out.stdout


def test_cli_missing_record_is_one_line(cli_runs):
    out, empty = cli_runs['missing'], cli_runs['empty']
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f'error: record {empty / "nope.json"} does not exist; pass a JSON file that '
        'tools/analysis/benchmark_compile.py wrote']
