"""Inductor's on-disk cache is kept apart per pinned vector ISA (``ATEN_CPU_CAPABILITY``):
``mmsnn.utils.compile.separate_inductor_cache_by_isa``, applied by ``import mmsnn``."""
import os.path as osp
import subprocess
import sys

import pytest

from mmsnn.utils.compile import ISA_CACHE_PREFIX, separate_inductor_cache_by_isa


def test_a_pinned_isa_gets_its_own_cache_folder_and_a_child_finds_its_way_back(tmp_path):
    base = str(tmp_path / 'inductor')
    env = {'TORCHINDUCTOR_CACHE_DIR': base, 'ATEN_CPU_CAPABILITY': 'AVX2'}
    pinned = osp.join(base, ISA_CACHE_PREFIX + 'avx2')
    assert separate_inductor_cache_by_isa(env) == pinned
    assert separate_inductor_cache_by_isa(env) == pinned  # once only: no nesting
    assert env['TORCHINDUCTOR_CACHE_DIR'] == pinned
    # a child process inherits the folder: with another ISA pinned, or none, it moves
    child = dict(env, ATEN_CPU_CAPABILITY='default')
    assert separate_inductor_cache_by_isa(child) == osp.join(base, ISA_CACHE_PREFIX + 'default')
    native = {'TORCHINDUCTOR_CACHE_DIR': pinned}
    assert separate_inductor_cache_by_isa(native) == base
    assert native['TORCHINDUCTOR_CACHE_DIR'] == base
    # nothing pinned, nothing inherited: the user's setting (or inductor's default) stays
    untouched = {'TORCHINDUCTOR_CACHE_DIR': base}
    assert separate_inductor_cache_by_isa(untouched) is None
    assert untouched == {'TORCHINDUCTOR_CACHE_DIR': base}
    assert separate_inductor_cache_by_isa({}) is None
    default = {'ATEN_CPU_CAPABILITY': 'avx2'}
    separate_inductor_cache_by_isa(default)
    assert osp.basename(default['TORCHINDUCTOR_CACHE_DIR']) == ISA_CACHE_PREFIX + 'avx2'


#: a compiled channels-last -> channels-first element-wise op (inductor writes it through an
#: 8x8 / 16x16 transposed tile: the kernel whose buffer size follows the vector width)
_SCRIPT = '''
import torch
import mmsnn  # noqa: F401  (separates the cache)
x = torch.randn(1, 24, 10, 12).contiguous(memory_format=torch.channels_last)
f = torch.compile(lambda t: (t * 2 + 1).contiguous(), backend='inductor')
y = f(x)
assert torch.equal(y, (x * 2 + 1).contiguous()), 'compiled result differs from eager'
print('ok')
'''


@pytest.mark.slow  # two processes, one inductor compilation each
def test_a_graph_compiled_with_avx2_pinned_is_not_reused_natively(tmp_path, tool_env):
    """The same graph compiled with ``ATEN_CPU_CAPABILITY=avx2``, then in a process without it,
    sharing one cache folder. Without the separation, on a CPU with AVX-512 the second
    process reused the AVX2 graph and compiled its kernel for 16 lanes: a segmentation fault
    (or wrong values). On an AVX2-only CPU both widths are the same and this cannot fail."""
    env = dict(tool_env, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / 'inductor'))
    env.pop('ATEN_CPU_CAPABILITY', None)
    for extra in ({'ATEN_CPU_CAPABILITY': 'avx2'}, {}):
        run = subprocess.run([sys.executable, '-c', _SCRIPT], env=dict(env, **extra),
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0 and run.stdout.strip().endswith('ok'), \
            f'{extra or "native"}: exit {run.returncode}\n{run.stderr[-2000:]}'
