"""Timings name the CPU they ran on (mmsnn.utils.machine)."""
from mmsnn.utils import machine


def test_cpu_description_names_model_flags_and_forced_kernels(monkeypatch, tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: Test CPU 9000\n'
                       'flags\t\t: fpu sse avx2 avx512f amx_tile\n\nprocessor\t: 1\n')
    real_open = open
    monkeypatch.setattr('builtins.open', lambda path, *a, **k: real_open(
        cpuinfo if path == '/proc/cpuinfo' else path, *a, **k))
    monkeypatch.delenv('ATEN_CPU_CAPABILITY', raising=False)
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')
    text = machine.cpu_description()
    assert text == 'Test CPU 9000 [avx2 avx512f amx_tile] (ONEDNN_MAX_CPU_ISA=AVX2)', text
