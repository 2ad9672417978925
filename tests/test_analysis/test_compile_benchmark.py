"""tools/analysis/benchmark_compile.py: which cells it measures, one measuring
child's JSON, and the float64 equality check of the fast path (no compilation: minutes)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    # the tool module by its path (tools/analysis is not a package; no sys.path change)
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'benchmark_compile_tool', osp.join(ROOT, 'tools/analysis/benchmark_compile.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_fast_routes_are_inference_only_and_with_cp_eager_train_only():
    tool = _tool()
    cells = tool.cells_of(tool.parse_args(['--models', 'backbone-s', '--size', '32x32',
                                           '--T', '1', '4', '--with-cp', 'both']))
    names = {(c['mode'], c['route'], c['T'], c['with_cp']) for c in cells}
    assert ('train', 'fast', 1, False) not in names
    assert ('train', 'compiled+fast', 1, False) not in names
    assert ('infer', 'fast', 4, False) in names and ('train', 'compiled', 4, False) in names
    assert {(m, r) for m, r, _, cp in names if cp} == {('train', 'eager')}
    assert all(c['size'] == [32, 32] for c in cells)


@pytest.mark.slow
def test_child_reports_time_compile_and_peak():
    spec = dict(model='backbone-s', size=[32, 32], mode='train', route='eager', T=1,
                with_cp=False, calls=1, profile=False)
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools/analysis/benchmark_compile.py'),
                          '--cell', json.dumps(spec)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res['time_s'] > 0 and res['first_s'] > 0 and res['peak_mib'] >= 0
    assert res['compile_s'] == max(res['first_s'] - res['time_s'], 0.0)


def test_check_fast_path_equal_in_float64():
    from mmsnn.analysis.compile_benchmark import check_equal
    res = check_equal('backbone-s', (32, 32), 'infer', 'fast')
    assert res['spikes'] > 0 and res['spikes_compared'] == res['spikes']
    assert res['spike_mismatch'] == 0
    assert res['output_err'] < 1e-12


def test_baseline_cells_run_the_other_checkouts_script(tmp_path):
    """``--baseline CHECKOUT``: every cell also in that checkout (its own script, the same
    interpreter), named by its commit and compared with its own eager cell; a folder that is
    no mmsnn checkout is refused in one line."""
    from mmsnn.analysis import compile_benchmark as cb
    from mmsnn.utils.errors import MMSNNUserError
    tool = _tool()
    cells = tool.cells_of(tool.parse_args(['--models', 'backbone-s', '--size', '32x32',
                                           '--modes', 'infer', '--routes', 'eager', 'fast',
                                           '--baseline', ROOT]))
    assert len(cells) == 4
    base = [c for c in cells if c.get('baseline')]
    assert len(base) == 2 and all(c['checkout'] == ROOT for c in base)
    cmd = cb.child_command(base[1], calls=1)
    assert cmd[1] == osp.join(ROOT, 'tools/analysis/benchmark_compile.py')
    assert 'checkout' not in json.loads(cmd[3]) and 'baseline' not in json.loads(cmd[3])
    summary = {cb.cell_name(**c): dict(cell=c, time_s=t) for c, t in zip(cells, [4, 8, 2, 2])}
    fast_base = cb.cell_name(**base[1])
    assert fast_base.endswith('@' + base[1]['baseline'])
    assert cb.eager_of(fast_base, summary)['time_s'] == 8  # its own checkout's eager
    with pytest.raises(MMSNNUserError, match='no tools/analysis/benchmark_compile.py there'):
        tool.cells_of(tool.parse_args(['--models', 'backbone-s', '--baseline', str(tmp_path)]))


def test_keep_freed_cells_are_named_and_compared_with_default_eager():
    from mmsnn.analysis import compile_benchmark as cb
    tool = _tool()
    cells = tool.cells_of(tool.parse_args(['--models', 'backbone-s', '--size', '32x32',
                                           '--modes', 'train', '--routes', 'eager', 'compiled',
                                           '--keep-freed-memory', 'both', '--baseline', ROOT]))
    kept = [c for c in cells if c.get('keep_freed')]
    assert len(kept) == 2 and not any(c.get('baseline') for c in kept)  # not in the baseline
    assert len(cells) == 2 + 2 + 2  # default and keep-freed here, default in the baseline
    name = cb.cell_name(**kept[1])
    assert name == 'backbone-s 32x32 train compiled keep-freed'
    summary = {cb.cell_name(**c): dict(cell=c, time_s=1.0) for c in cells}
    assert cb.eager_of(name, summary)['cell'] == dict(
        model='backbone-s', size=[32, 32], mode='train', route='eager', T=1, with_cp=False)


def test_table_without_a_default_allocator_eager_cell_has_no_ratio():
    """With ``--keep-freed-memory on`` no cell runs with the default allocator: the x eager
    column says '-' (it said nan), and a run that has the eager cell gives its ratio."""
    from mmsnn.analysis import compile_benchmark as cb
    cell = dict(model='backbone-s', size=[32, 32], mode='infer', T=1, with_cp=False)
    summary = {cb.cell_name(**cell, route=r, keep_freed=True):
               dict(cell=dict(cell, route=r, keep_freed=True), time_s=t, compile_cold_s=0.0,
                    peak_mib=1.0) for r, t in (('eager', 2.0), ('fast', 1.0))}
    rows = cb.format_table(summary, 'a CPU').splitlines()[2:]
    assert [row.split()[-3] for row in rows] == ['-', '-'] and 'nan' not in ''.join(rows)
    summary[cb.cell_name(**cell, route='eager')] = dict(
        cell=dict(cell, route='eager'), time_s=3.0, compile_cold_s=0.0, peak_mib=1.0)
    rows = cb.format_table(summary, 'a CPU').splitlines()[2:]
    assert [row.split()[-3] for row in rows] == ['1.50', '3.00', '1.00']
