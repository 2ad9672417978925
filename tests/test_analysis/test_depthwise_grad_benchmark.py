"""``tools/analysis/benchmark_depthwise_grad.py``: oneDNN's and mmsnn's depthwise weight
gradients at a Meta-SDT's shapes, side by side."""
import re

import pytest

from mmsnn.analysis.benchmark.depthwise_grad import depthwise_shapes
from mmsnn.utils.errors import MMSNNUserError


def _tool():
    from tool_helpers import load_analysis_script
    return load_analysis_script('benchmark_depthwise_grad')


def test_shapes_are_the_backbones_depthwise_convs():
    """MetaSDT-t on 64x96: the SepConvs' 7x7 convs of the conv stages at strides 2, 4 and 8
    (T = 2 folds into the batch), which the model computes with mmsnn's kernel, and the 3x3
    depthwise convs of the later stages, which it leaves to oneDNN."""
    shapes = depthwise_shapes('t', (64, 96), T=2)
    sevens = [(s, used) for s, w, p, used in shapes if w[2:] == (7, 7)]
    assert [s[2:] for s, _ in sevens] == [(32, 48), (16, 24), (8, 12), (8, 12)]
    assert all(s[0] == 2 and used for s, used in sevens)
    threes = [used for s, w, p, used in shapes if w[2:] == (3, 3)]
    assert threes and not any(threes)


def test_tool_prints_both_kernels_per_shape(capsys):
    assert _tool().main(['--archs', 't', '--size', '64x96', '--repeats', '1']) == 0
    out = capsys.readouterr().out
    assert 'CPU ' in out and 'thread(s)' in out
    rows = [line.split() for line in out.splitlines() if line.startswith('t ')]
    assert len(rows) == len(depthwise_shapes('t', (64, 96)))
    for row in rows:
        assert row[-1] == ('mmsnn' if row[2] == '7x7' else 'oneDNN')
        assert float(row[-2]) < 1e-4  # the two agree to float32 rounding
    assert re.search(r'^all: oneDNN [\d.]+ s, mmsnn [\d.]+ s', out, re.M)


@pytest.mark.parametrize('argv,message', [
    (['--repeats', '0'], '--repeats and --T must be at least 1'),
    (['--archs', 'q'], "unknown --archs ['q']"),
])
def test_bad_arguments_stop_before_any_work(argv, message):
    with pytest.raises(MMSNNUserError, match=re.escape(message)):
        _tool().main(argv)
