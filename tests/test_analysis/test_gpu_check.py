"""tools/analysis/gpu_check.py runs on a CPU-only machine: the CUDA rows say they
were skipped, the CPU parts run, one table comes out (so the script cannot rot unnoticed)."""
import pytest
import torch


def test_gpu_check_runs_on_cpu(run_tool):
    if torch.cuda.is_available():
        pytest.skip('the CPU fallback is what this test checks')
    # run_tool: one thread (two test workers share the cores)
    out = run_tool('tools/analysis/gpu_check.py', '--size', '64x64', '--spike-size', '32x32',
                   '--calls', '1')
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith('GPU readiness check (CPU: ')
    assert 'device' in lines[1] and 'CPU only' in lines[1]
    skipped = [ln for ln in lines if ln.endswith('skipped (no CUDA device)')]
    # train/infer x (fp32 compiled, AMP eager, AMP compiled); the eager fp32 rows run on CPU
    assert len(skipped) == 6, out.stdout
    on_cpu = [ln for ln in lines if 'eager fp32 on CPU' in ln]
    assert len(on_cpu) == 3 and all(' s/step' in ln for ln in on_cpu), out.stdout
    spikes = [ln for ln in lines if ln.startswith('spikes cpu float32 vs CPU float64')]
    assert len(spikes) == 1, out.stdout
    share = float(spikes[0].split()[-5])
    assert 0.99 <= share <= 1.0, spikes[0]  # float32 rounding moves only a few spikes
