"""``PeakRSSByOp`` (``tools/analysis/peak_rss_by_op.py``): the peak RSS while each op ran,
which sees memory a kernel holds for itself (the tensor count at the dispatcher cannot)."""
import pytest
import torch

from mmsnn.analysis.benchmark.rss_by_op import PeakRSSByOp, peak_rss_per_op_available

pytestmark = pytest.mark.skipif(not peak_rss_per_op_available(),
                                reason="needs Linux's resettable peak-RSS mark (VmHWM)")


def test_each_op_gets_its_own_peak_and_its_scratch():
    x = torch.randn(16 * 2**20)  # 64 MiB
    with PeakRSSByOp() as mode:
        torch.median(x)  # ATen partitions a copy of the whole input: 64 MiB held only inside
        x.add_(1)  # in place: nothing new
    rows = {row['op']: row for row in mode.rows}
    median, add = rows['aten.median.default'], rows['aten.add_.Tensor']
    assert median['shapes'] == [(16 * 2**20,)]
    assert PeakRSSByOp.scratch(median) >= 56  # MiB: the copy
    assert median['after'] - median['before'] < 8  # ...freed before the op returned
    # the mark is reset before every op: the in-place add does not inherit the median's peak
    assert PeakRSSByOp.scratch(add) < 8
    assert [row['index'] for row in mode.rows] == list(range(len(mode.rows)))


def test_tool_names_the_ops_of_a_tiny_train_step(capsys):
    import importlib.util
    import os.path as osp

    from mmsnn.deploy.allocator import settle_mmap_threshold
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        'peak_rss_by_op', osp.join(repo, 'tools', 'analysis', 'peak_rss_by_op.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    try:
        assert tool.main(['--model', 'backbone-s', '--size', '32x32', '--top', '3']) == 0
    finally:
        settle_mmap_threshold()  # the tool fixed glibc's mmap threshold for its reading
    out = capsys.readouterr().out
    assert 'highest peaks' in out and 'most scratch' in out
    assert 'backbone-s 32x32 train step' in out and out.count('aten.') == 6
