"""The helpers that make ``tools/analysis/benchmark.py``'s cost-of-spiking comparison fair
(``mmsnn.analysis.benchmark``): BatchNorm calibration, the activation-range
evidence, the fixed RoIs of the detector heads, and the docs page's result block. No timings
are asserted."""
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from mmsnn.analysis.benchmark import cost_of_spiking as benchmark
from mmsnn.analysis.benchmark import docs_block, fairness as fair

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools', 'analysis')


# ---------------------------------------------------------------- normalisation


class _Tiny(nn.Module):
    """A tiny Meta-SDT (SRB mixer) as ``model.backbone``; ReLU twin or spiking."""

    def __init__(self, neuron_cfg):
        super().__init__()
        from mmsnn.models.backbones.meta_sdt import MetaSDT
        self.backbone = MetaSDT(embed_dims=(8, 16, 32, 48), mixer='srb', neuron_cfg=neuron_cfg)


def _tiny(neuron_cfg):
    torch.manual_seed(0)
    return _Tiny(neuron_cfg), torch.randn(1, 3, 64, 64)


def test_calibration_puts_the_relu_twin_in_range():
    model, x = _tiny(dict(type='ReLU'))

    def run():
        return model.backbone(x)

    before = fair.activation_range(model, run, parts=('backbone',))
    assert fair.calibrate_batchnorm(model, run) > 0
    after = fair.activation_range(model, run, parts=('backbone',))
    # unit scale at every tap: each tap is a sum of a few N(0, 1) BN outputs (the residual
    # stream); at random init with identity eval-mode BN the twin's taps shrink instead
    assert after['nonfinite'] == 0 and after['denormal'] == 0
    assert all(0.5 < rms < 20 for rms in after['tap_rms']), after['tap_rms']
    assert min(before['tap_rms']) < 0.5  # what the calibration changed (not a tautology)
    assert model.training  # activation_range / calibrate restore the mode they found (train)
    # eval mode reproduces the train-mode (batch-statistics) forward it was calibrated on
    with torch.no_grad():
        evals = model.backbone.eval()(x)
        trains = model.backbone.train()(x)
    for e, t in zip(evals, trains):
        assert torch.allclose(e, t, rtol=0.02, atol=0.02)


def test_calibration_wakes_the_spiking_model_up():
    model, x = _tiny(None)  # the integer quantiser

    def run():
        return model.backbone(x)

    before = fair.activation_range(model, run, parts=('backbone',))
    fair.calibrate_batchnorm(model, run)
    after = fair.activation_range(model, run, parts=('backbone',))
    assert before['active'] < 0.05  # at init most counts round to 0
    assert after['active'] > 0.15
    assert all(0.5 < rms < 20 for rms in after['tap_rms']), after['tap_rms']


def test_activation_range_counts_nonfinite_and_denormal_values():
    from mmsnn.models.neurons import ReLUTwin

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = ReLUTwin()

        def forward(self, x):
            return (self.act(x),)

    model = nn.Module()
    model.backbone = Backbone()
    x = torch.tensor([2.0, -3.0, float('inf'), 1e-40, 0.0, float('nan'), 5.0, -1e-41])
    r = fair.activation_range(model, lambda: model.backbone(x), parts=('backbone',))
    assert r['max_abs'] == 5.0  # over the finite values
    assert r['nonfinite'] == 2 / 8
    assert r['denormal'] == 2 / 8
    assert r['active'] == 5 / 8  # relu: 2, inf, 1e-40, nan, 5 are non-zero
    assert len(r['tap_rms']) == 1


# ---------------------------------------------------------------- fixed RoIs


def test_fixed_proposals_fill_the_positive_quota():
    from mmdet.structures.bbox import bbox_overlaps
    gts = torch.tensor([[10., 20., 50., 90.], [60., 5., 120., 40.]])
    boxes = fair.fixed_proposals((100, 128), gts, 40, seed=3)
    assert boxes.shape == (40, 4)
    assert torch.equal(boxes, fair.fixed_proposals((100, 128), gts, 40, seed=3))
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 127).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 99).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    best = bbox_overlaps(boxes, gts).max(1).values
    assert (best[:10] > 0.7).all()  # the quarter near the ground truth


@pytest.fixture(scope='module')
def demo_detectors():
    models = {}
    for variant in ('snn-T1', 'relu-T1'):
        torch.manual_seed(0)
        model = benchmark.build('det', 'demo', variant, torch.device('cpu'))
        benchmark.quiet_init(model)
        models[variant] = model
    data = benchmark.make_batch('det', (128, 128), 1, 'cpu')
    return models, data


@pytest.mark.slow
def test_fixed_rois_give_both_models_the_same_work(demo_detectors):
    models, data = demo_detectors
    counts, boxes = {}, {}
    for variant, model in models.items():
        with fair.fixed_rois(model, data['data_samples']) as seen:
            batch = model.data_preprocessor(data, True)
            model.train()
            with torch.no_grad():
                model(**batch, mode='loss')
            train = {k: list(v) for k, v in seen.items()}
            for v in seen.values():
                v.clear()
            model.eval()
            with torch.no_grad():
                results = model.test_step(data)
        counts[variant] = (train, {k: list(v) for k, v in seen.items()})
        boxes[variant] = results[0].pred_instances.bboxes
        assert len(results[0].pred_instances) == 100  # test_cfg.rcnn.max_per_img
        # the patches are gone after the context
        assert 'predict_by_feat' not in vars(model.rpn_head)
        assert '_bbox_forward' not in vars(model.roi_head)
    # demo config: sampler.num = 128 (quota 0.25 -> 32 positives for the mask head);
    # test: rpn max_per_img = 300 proposals, rcnn max_per_img = 100 detections
    expected = (dict(bbox=[128], mask=[32]), dict(bbox=[300], mask=[100]))
    assert counts['snn-T1'] == expected
    assert counts['relu-T1'] == expected
    assert torch.equal(boxes['snn-T1'], boxes['relu-T1'])  # the same detections, not NMS's


# ---------------------------------------------------------------- README block

README = f"""# Title

Intro text.

{docs_block.README_BEGIN}
old table
{docs_block.README_END}

More text after.
"""


def test_readme_block_replaces_only_the_marked_part():
    new = docs_block.replace_readme_block(README, 'new table\n| a | b |')
    assert new == README.replace('old table', 'new table\n| a | b |')
    assert docs_block.replace_readme_block(new, 'old table') == README  # idempotent round trip


def test_readme_block_refuses_missing_or_repeated_markers(tmp_path):
    for text in ('no markers', README.replace(docs_block.README_END, ''),
                 README + docs_block.README_BEGIN,
                 f'{docs_block.README_END}\nx\n{docs_block.README_BEGIN}'):
        with pytest.raises(ValueError):
            docs_block.replace_readme_block(text, 'x')
        path = tmp_path / 'README.md'
        path.write_text(text)
        problem = docs_block.readme_problem(str(path))
        assert problem and '\n' not in problem and docs_block.README_BEGIN in problem
    path.write_text(README)
    assert docs_block.readme_problem(str(path)) is None
    assert 'cannot read' in docs_block.readme_problem(str(tmp_path / 'missing.md'))


@pytest.fixture(scope='module')
def refusals(tmp_path_factory, run_tool_each):
    """``benchmark.py --sizes demo --readme|--docs FILE`` on a file without the markers (one
    process for both): {option: (CompletedProcess, FILE)}."""
    folder = tmp_path_factory.mktemp('no_markers')
    files = {'--readme': folder / 'README.md', '--docs': folder / 'benchmarks.md'}
    for path in files.values():
        path.write_text('# no markers here\n')
    procs = run_tool_each([('tools/analysis/benchmark.py', ['--sizes', 'demo', option, path])
                           for option, path in files.items()])
    return {option: (proc, files[option]) for option, proc in zip(files, procs)}


def test_cli_refuses_a_readme_without_markers_before_measuring(refusals):
    out, readme = refusals['--readme']
    assert out.returncode == 2
    assert out.stdout == ''  # nothing measured
    last = out.stderr.strip().splitlines()[-1]
    assert docs_block.README_BEGIN in last and 'add them' in last
    assert readme.read_text() == '# no markers here\n'


def test_readme_block_from_results():
    def row(variant, train, infer, **kw):
        return dict(task='seg', size='96x96', size_key='demo', scope='full', variant=variant,
                    train_img_s=train, infer_img_s=infer, train_peak_mib=10.0, **kw)
    results = [row('snn-T1', 2.0, 4.0), row('relu-T1', 1.0, 8.0),
               dict(task='seg', size='96x96', size_key='demo', scope='full',
                    variant='snn-T4', error='exit -9: killed (out of memory?)')]
    ratios = benchmark.ratio_rows(results, ['seg'], ['demo'], ['full'])
    by_name = {q['ratio']: q for q in ratios}
    # time ratio SNN / ReLU: train 0.5 s / 1 s, inference 0.25 s / 0.125 s
    assert by_name['SNN/ReLU at T=1']['train'] == 0.5
    assert by_name['SNN/ReLU at T=1']['infer'] == 2.0
    assert math.isnan(by_name['I-LIF T=4 / T=1']['train'])
    meta = dict(command='.venv/bin/python tools/analysis/benchmark.py --sizes demo',
                date='2026-01-01 00:00 UTC', commit='abc1234', machine='2 cores', batch=1,
                timing='best of 2 after a warm-up')
    block = benchmark.readme_block(results, ratios, meta)
    assert meta['command'] in block and 'abc1234' in block and '2026-01-01' in block
    assert '| seg | 96×96 | full | 2 / 4 (10) | failed: killed (out of memory?) | 1 / 8 (10) |' \
        in block
    assert '| seg | 96×96 | full | 0.50 (2.00) | nan (nan) |' in block


# ---------------------------------------------------------------- fast-path driver


@pytest.mark.slow
def test_fast_path_driver_measures_the_three_variants(tmp_path):
    """``benchmark_backbone.py --fast-path`` runs plain, fused and fast each in a process of
    its own that really is that variant (the driver checks what each process reports), and
    writes a row per model with the medians and peak RSS. No timing is asserted."""
    import json
    out = tmp_path / 'fast.json'
    run = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'benchmark_backbone.py'), '--fast-path', '--archs', 's',
         '--sizes', '64x64', '--repeats', '1', '--device', 'cpu', '--json', str(out)],
        capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert run.returncode == 0, run.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row['model'] == 'MetaSDT-s srb 64x64' and row['runs'] == 2
    assert set(row['peak_rss_mib']) == {'plain', 'fused', 'fast'}
    assert row['speedup'] == pytest.approx(row['plain_s'] / row['fast_s'])
    assert all(row[k] > 0 for k in ('plain_s', 'fused_s', 'fast_s'))


# ---------------------------------------------------------------- docs page and driver


def test_results_go_to_the_docs_page_not_the_readme():
    """``benchmark.py --docs`` writes into ``docs/en/benchmarks.md``: the page exists in the
    checkout with one marked block to rewrite."""
    page = osp.join(REPO, docs_block.BENCHMARKS_PAGE)
    assert docs_block.BENCHMARKS_PAGE == osp.join('docs', 'en', 'benchmarks.md')
    assert docs_block.block_problem(page) is None
    with open(page) as f:
        text = f.read()
    assert docs_block.replace_block(text, 'x').count('\nx\n') == 1


def test_cli_refuses_a_docs_page_without_markers_before_measuring(refusals):
    out, page = refusals['--docs']
    assert out.returncode == 2 and out.stdout == ''
    assert docs_block.BLOCK_BEGIN in out.stderr.strip().splitlines()[-1]
    assert page.read_text() == '# no markers here\n'


def test_one_measurement_driver_reads_the_last_json_line_and_says_why_it_failed():
    """``run_measurement``: the one driver of every benchmark script's measuring processes."""
    from mmsnn.analysis.benchmark.processes import MeasurementFailed, run_measurement
    ok = [sys.executable, '-c', 'import json, os; print("noise"); '
          'print(json.dumps(dict(v=os.environ["MALLOC_MMAP_THRESHOLD_"])))']
    assert run_measurement(ok, 'ok', env=dict(MALLOC_MMAP_THRESHOLD_='7')) == dict(v='7')
    with pytest.raises(MeasurementFailed) as e:
        run_measurement([sys.executable, '-c', 'import sys; sys.exit("bad size 3x3")'], 'x')
    assert e.value.returncode == 1 and e.value.reason == 'bad size 3x3'
    with pytest.raises(MeasurementFailed) as e:
        run_measurement([sys.executable, '-c', 'import os; os.kill(os.getpid(), 9)'], 'x')
    assert e.value.returncode < 0 and e.value.reason == 'killed (out of memory?)'


def test_spike_agreement_counts_moved_spikes():
    """``mmsnn.analysis.spike_agreement``: a variant that moves spikes is counted against the
    float64 reference; the unchanged model agrees exactly."""
    from mmsnn.analysis.spike_agreement import spike_agreement
    from mmsnn.models.neurons import MultiSpikeQuantizer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1, bias=False)
            self.q = MultiSpikeQuantizer()

        def extract_feat(self, x):
            return self.q(self.conv(x))

    model = Net()
    nn.init.constant_(model.conv.weight, 1.0)
    x = torch.full((1, 1, 2, 2), 1.0)  # conv output 1.0: one spike count per element

    def shifted(m):  # moves every input by half a level: every count changes
        nn.init.constant_(m.conv.weight, 1.5)
        return m

    reference, rows = spike_agreement(model, x, dict(plain=lambda m: m, shifted=shifted))
    assert len(reference) == 1 and reference[0].dtype == torch.float64
    assert rows['plain'] == (0, None)
    assert rows['shifted'] == (8, 0)  # 2 channels x 2 x 2, all in the first tensor
    assert float(model.conv.weight.detach()[0, 0]) == 1.0  # the model itself is untouched
