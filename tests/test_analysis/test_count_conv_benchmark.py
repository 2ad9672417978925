"""``tools/analysis/benchmark_count_conv.py``: float32 and int8 count convolutions at a
Meta-SDT's spike-fed conv shapes, side by side."""
import re

import pytest

from mmsnn.analysis.benchmark.count_conv import spike_fed_conv_shapes
from mmsnn.ops.count_conv import count_conv_supported
from mmsnn.utils.errors import MMSNNUserError


def _tool():
    from tool_helpers import load_analysis_script
    return load_analysis_script('benchmark_count_conv')


def test_shapes_are_the_spike_fed_convs():
    """MetaSDT-t on 64x96: the stem reads the image (not listed); every listed conv reads a
    neuron's output at its stage's stride."""
    shapes = spike_fed_conv_shapes('t', (64, 96))
    names = [name for name, *_ in shapes]
    assert names and 'downsample1_1.encode_conv' not in names
    for name, conv, shape, norm in shapes:
        assert norm == 4.0 and shape[1] == conv.in_channels
        assert shape[-1] in (48, 24, 12, 6, 12 * 6, 6 * 3, 3 * 2)  # a map or a flattened one


@pytest.mark.skipif(not count_conv_supported(), reason='no oneDNN int8 convolution in this torch')
def test_tool_prints_both_kernels_per_shape(capsys):
    assert _tool().main(['--archs', 't', '--size', '64x96', '--repeats', '1']) == 0
    out = capsys.readouterr().out
    assert 'CPU ' in out and 'thread(s)' in out
    rows = [line.split() for line in out.splitlines() if line.startswith('t ')]
    assert rows
    for row in rows:
        assert row[-1] in ('count', 'float32')
        assert float(row[-2]) < 1e-5  # the two agree to float32 rounding
    assert re.search(r"^all: float32 [\d.]+ s, count [\d.]+ s, the rule's choice", out, re.M)


@pytest.mark.parametrize('argv,message', [
    (['--repeats', '0'], '--repeats must be at least 1'),
    (['--archs', 'q'], "unknown --archs ['q']"),
])
def test_tool_refuses_bad_arguments(argv, message):
    with pytest.raises(MMSNNUserError, match=re.escape(message)):
        _tool().main(argv)
