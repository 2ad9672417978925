"""The measuring processes of the benchmarks: timed steps under glibc's default allocator
(as a user's run), the peak read on one more step with freed memory returned at once."""
import json
import subprocess
import sys

import pytest

from mmsnn.analysis import compile_benchmark as cb

_PEAK_CHILD = r'''
import json, torch
from mmsnn.analysis.benchmark.processes import memory_base, peak_of_one_more
dev = torch.device('cpu')
base = memory_base(dev)
def timed_step():  # leaves freed blocks in glibc's heap under the default allocator
    for mib in (24, 12, 6):
        x = torch.ones(mib * 2**18)
        del x
    big = torch.ones(300 * 2**18)  # 300 MiB, freed: must not count in the step's peak
    del big
for _ in range(3):
    timed_step()
def step():  # 2 x 100 MiB alive together
    a = torch.ones(100 * 2**18)
    b = a + 1
    del a, b
print(json.dumps(dict(peak=peak_of_one_more(step, dev, base))))
'''


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc (Linux)')
def test_peak_of_one_more_is_the_steps_live_peak():
    # in a process of its own: fixing glibc's threshold cannot be undone for the process
    out = subprocess.run([sys.executable, '-c', _PEAK_CHILD], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    peak = json.loads(out.stdout.strip().splitlines()[-1])['peak']
    # 200 MiB alive at once; the 300 MiB of the timed steps before are not counted
    assert 195 <= peak <= 240, peak


def test_measuring_processes_keep_glibcs_default_allocator(monkeypatch):
    """The benchmark's cells run without a malloc setting in their environment (a fixed mmap
    threshold made every large tensor fault in fresh pages: +70% CPU per train step)."""
    monkeypatch.delenv('MALLOC_MMAP_THRESHOLD_', raising=False)
    probe = [sys.executable, '-c', 'import json, os; print(json.dumps('
             '{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}))']
    monkeypatch.setattr(cb, 'child_command', lambda cell, calls, profile=False: probe)
    assert cb.run_cell(dict(model='backbone-s'), calls=1) == {}
