"""tools/analysis/gpu_check.py runs on a CPU-only machine: the CUDA rows say they
were skipped, the CPU parts run, one table comes out (so the script cannot rot unnoticed)."""
import pytest
import torch


def test_gpu_check_runs_on_cpu(run_tool):
    if torch.cuda.is_available():
        pytest.skip('the CPU fallback is what this test checks')
    # run_tool: one thread (two test workers share the cores); --calls 0: each row runs once
    out = run_tool('tools/analysis/gpu_check.py', '--size', '64x64', '--spike-size', '32x32',
                   '--calls', '0')
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith('GPU readiness check (CPU: ')
    assert 'device' in lines[1] and 'CPU only' in lines[1]
    skipped = [ln for ln in lines if ln.endswith('skipped (no CUDA device)')]
    # train/infer x (fp32 compiled, AMP eager, AMP compiled); the eager fp32 rows run on CPU
    assert len(skipped) == 6, out.stdout
    on_cpu = [ln for ln in lines if 'eager fp32 on CPU' in ln]
    assert len(on_cpu) == 3 and all('first call' in ln and 'no timed call' in ln
                                    for ln in on_cpu), out.stdout
    spikes = [ln for ln in lines if ln.startswith('spikes cpu float32 vs CPU float64')]
    assert len(spikes) == 1, out.stdout
    share = float(spikes[0].split()[-5])
    assert 0.99 <= share <= 1.0, spikes[0]  # float32 rounding moves only a few spikes


def test_gpu_check_times_calls_after_the_first():
    from mmsnn.analysis.gpu_check import _step_time, time_step
    calls = []
    first, steady = time_step(lambda: calls.append(1), torch.device('cpu'), 3)
    assert len(calls) == 4 and 0 <= steady and 0 <= first
    assert time_step(lambda: calls.append(1), torch.device('cpu'), 0)[1] is None
    assert _step_time(dict(first_s=2.0, time_s=0.5)) == '0.500 s/step (first call 2.0 s)'
    assert 'no timed call' in _step_time(dict(first_s=2.0, time_s=None))


def test_gpu_check_refuses_negative_calls():
    import importlib.util
    import os.path as osp

    from mmsnn.utils.errors import MMSNNUserError
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        'gpu_check_tool', osp.join(repo, 'tools', 'analysis', 'gpu_check.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(MMSNNUserError, match='--calls -1'):
        tool.main(['--calls', '-1'])  # before any model is built
