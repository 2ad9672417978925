"""The seed sweep (mmsnn.analysis.seed_sweep, tools/analysis/seed_sweep.py): kernel families,
the summary, and one toy sweep end to end."""
import json
import os.path as osp

import pytest
import torch

from mmsnn.analysis import seed_sweep
from mmsnn.utils.errors import MMSNNUserError

HERE = osp.dirname(osp.dirname(osp.abspath(__file__)))  # tests/
TOY = osp.join(HERE, 'data', 'toy_config.py')


def _run(seed, family, **metrics):
    return dict(seed=seed, family=family, capability='X', metrics=metrics)


def test_summary_is_min_median_max_over_the_runs():
    runs = [_run(0, 'native', a=0.5, b=1.0), _run(1, 'native', a=0.1),
            _run(0, 'avx2', a=0.3, b=3.0), _run(1, 'avx2', a=0.9, b=2.0)]
    s = seed_sweep.summarise(runs, ['a', 'b', 'missing'])
    assert s['a'] == dict(n=4, min=0.1, median=0.4, max=0.9)
    assert s['b'] == dict(n=3, min=1.0, median=2.0, max=3.0)
    assert 'missing' not in s
    text = seed_sweep.format_sweep(runs, ['a'])
    assert 'a: min 0.100  median 0.400  max 0.900  (min-max over 4 runs)' in text


def test_family_env_sets_only_its_own_kernel_settings():
    base = {'PATH': '/bin', 'ATEN_CPU_CAPABILITY': 'avx512', 'ONEDNN_MAX_CPU_ISA': 'AVX512'}
    native = seed_sweep.family_env('native', base)
    assert native == {'PATH': '/bin'}
    assert seed_sweep.family_env('avx2', base) == {
        'PATH': '/bin', 'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2',
        'MKL_CBWR': 'AVX2'}
    with pytest.raises(MMSNNUserError, match="unknown kernel family 'sse'; choose from"):
        seed_sweep.family_env('sse', base)


def test_avx2_family_makes_torch_dispatch_avx2_kernels(venv_python, tool_env):
    if 'AVX2' not in torch.backends.cpu.get_cpu_capability() and \
            'AVX512' not in torch.backends.cpu.get_cpu_capability():
        pytest.skip('this CPU has no AVX2 kernels')
    assert seed_sweep.cpu_capability(venv_python, seed_sweep.family_env('avx2', tool_env)) \
        == 'AVX2'


def test_toy_sweep_trains_tests_and_reuses_finished_runs(tmp_path, repo_root, venv_python,
                                                         tool_env):
    work = str(tmp_path / 'sweep')
    runs = [seed_sweep.run_one(TOY, 3, family, work, repo_root, python=venv_python,
                               base_env=tool_env, train_options=['train_cfg.max_iters=2'])
            for family in ('native', 'avx2')]
    assert [r['family'] for r in runs] == ['native', 'avx2']
    assert runs[1]['capability'] == 'AVX2'
    for r in runs:
        assert r['seed'] == 3 and 0 <= r['metrics']['toy/accuracy'] <= 100
        log = open(osp.join(work, f'{r["family"]}_seed3', 'train.log')).read()
        assert "'seed': 3" in log or 'seed: 3' in log or 'seed = 3' in log
    # a finished run is read back, not trained again
    marker = osp.join(work, 'native_seed3', 'result.json')
    with open(marker) as f:
        saved = json.load(f)
    saved['metrics']['toy/accuracy'] = -1.0
    with open(marker, 'w') as f:
        json.dump(saved, f)
    again = seed_sweep.run_one(TOY, 3, 'native', work, repo_root, python=venv_python,
                               base_env=tool_env)
    assert again['metrics']['toy/accuracy'] == -1.0


def test_tool_refuses_unknown_family_before_any_work(tmp_path, run_tool):
    work = tmp_path / 'sweep'
    proc = run_tool('tools/analysis/seed_sweep.py', TOY, '--families', 'avx3', '--work-dir',
                    work, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count('error: ') == 1 and 'Traceback' not in proc.stderr
    assert "unknown kernel family 'avx3'" in proc.stderr and 'native, avx2' in proc.stderr
    assert not work.exists()
