"""``tools/analysis/st_erf.py --models``: the ERF comparison of any mix of mmsnn backbones and
stock ANN backbones at matched strides (tiny models, 32 px inputs)."""
import json
import os

import pytest
import torch

TINY = [
    "dict(type='Spikformer', arch=None, embed_dims=16, depth=1, num_heads=2, T=2)",
    "dict(type='SDTv1', arch=None, embed_dims=16, depth=1, num_heads=2, T=2)",
    "dict(type='QKFormer', arch=None, embed_dims=16, depth=4, num_heads=2, T=2)",
    "dict(type='MetaSDT', embed_dims=(8, 16, 16, 16), mixer='srb', out_indices=(0, 1, 2, 3, 4))",
    "dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=8, num_layers=[1, 1, 1, 1], "
    "num_heads=[1, 1, 1, 1])",
]
LABELS = ['spikformer', 'sdt_v1', 'qkformer', 'metasdt_srb', 'pvtv2']
# the deepest tap with each stride, read off the architectures (module docstrings; PVTv2's
# stages have strides 4, 8, 16, 32)
EXPECTED_TAPS = {8: {'spikformer': 2, 'sdt_v1': 2, 'qkformer': 2, 'metasdt_srb': 2, 'pvtv2': 1},
                 16: {'spikformer': 4, 'sdt_v1': 4, 'qkformer': 4, 'metasdt_srb': 4,
                      'pvtv2': 2}}


ST_ERF = 'tools/analysis/st_erf.py'


def _st_erf(run_tool, *argv):
    """The tool in its own process; asserts it succeeded, returns its stdout."""
    proc = run_tool(ST_ERF, *argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _png(path):
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n', path
    assert os.path.getsize(path) > 1000


def _rows(table_text):
    rows = [line.strip('|').split('|') for line in table_text.splitlines()[2:]]
    return [[c.strip() for c in r] for r in rows]


def test_models_figure_and_table(tmp_path, run_tool):
    out = tmp_path / 'out'
    text = _st_erf(run_tool, '--models', *TINY, '--labels', *LABELS, '--strides', '8', '16',
                   '--size', '32', '--num-inputs', '2', '--batch-size', '2', '--out-dir', out)
    _png(str(out / 'models.png'))
    table = (out / 'models_table.md').read_text()
    assert table.strip() in text  # printed as written
    rows = _rows(table)
    assert [(r[0], int(r[1])) for r in rows] == [(m, s) for m in LABELS for s in (8, 16)]
    for label, stride, tap, *values in rows:
        assert tap == f'tap{EXPECTED_TAPS[int(stride)][label]}', (label, stride, tap)
        areas, coverage = [float(v) for v in values[:4]], float(values[4])
        assert all(0 < a <= 1 for a in areas) and areas == sorted(areas), (label, areas)
        assert 0 < coverage <= 1
    summary = json.loads((out / 'models_summary.json').read_text())
    assert summary['pvtv2']['note'] == 'random init'


def test_models_delays_per_step(tmp_path, run_tool):
    out = tmp_path / 'delays'
    _st_erf(run_tool, '--models', TINY[2], TINY[4], '--labels', 'qkformer', 'pvtv2',
            '--strides', '16', '--delays', '--encoding', 'per-step', '--size', '32',
            '--num-inputs', '2', '--out-dir', out)
    _png(str(out / 'models.png'))
    rows = _rows((out / 'models_table.md').read_text())
    share = {r[0]: r[-1] for r in rows}
    # a 2-step SNN gets some of its last output from the earlier frame; the ANN has no time
    assert 0 < float(share['qkformer']) < 1 and share['pvtv2'] == '-'


MODELS_ERRORS = [
    (['--models', 'resnet-9000'], "unknown model 'resnet-9000'"),
    (['--models', TINY[4], '--strides', '2'], 'has no stage tap with stride 2'),
    (['--models', TINY[0], '--delays'], '--delays needs one input frame per time step'),
    (['--models', TINY[0], '--mixers', 'srb'], 'do not combine it'),
    (['--models', TINY[0], TINY[1], '--model-checkpoints', 'x.pth'], 'one per --models'),
]


@pytest.fixture(scope='module')
def models_refusals(run_tool_each):
    """The tool on each argv of :data:`MODELS_ERRORS`, all in one process."""
    return run_tool_each([(ST_ERF, [*argv, '--size', '32', '--num-inputs', '1'])
                          for argv, _ in MODELS_ERRORS])


@pytest.mark.parametrize('case', range(len(MODELS_ERRORS)),
                         ids=[needle for _, needle in MODELS_ERRORS])
def test_models_errors(case, models_refusals):
    needle = MODELS_ERRORS[case][1]
    proc = models_refusals[case]
    assert proc.returncode == 2
    err = proc.stderr
    assert needle in err and 'Traceback' not in err


def test_models_checkpoint_is_loaded(tmp_path, run_tool):
    """A checkpoint per model goes through the one converter: a ``{'model': sd}`` file of a
    differently initialised twin changes the ERF and is reported in the notes."""
    from mmsnn.models import SDTv1
    torch.manual_seed(5)
    twin = SDTv1(arch=None, embed_dims=16, depth=1, num_heads=2, T=2)
    for m in twin.modules():  # a visibly different model: strong BN gains
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.constant_(m.weight, 3.0)
    ckpt = tmp_path / 'sdt.pth'
    torch.save({'model': twin.state_dict()}, ckpt)
    args = ['--models', TINY[1], TINY[1], '--labels', 'random', 'loaded', '--strides', '16',
            '--size', '32', '--num-inputs', '1', '--out-dir', str(tmp_path / 'o')]
    text = _st_erf(run_tool, *args, '--model-checkpoints', 'none', ckpt)
    assert 'loaded: checkpoint sdt.pth' in text and 'random: random init' in text
    rows = _rows((tmp_path / 'o' / 'models_table.md').read_text())
    assert rows[0][3:] != rows[1][3:]


def test_calibrate_bn_normalises_what_each_bn_sees():
    """--calibrate-bn: after it, the stem BN maps its calibration inputs to mean 0, variance
    1 per channel, and the random-init SNN, silent before, fires in its deeper layers."""
    from mmsnn.analysis import make_noise_inputs
    from mmsnn.analysis.erf_models import calibrate_batchnorm
    from mmsnn.models import Spikformer
    from mmsnn.models.backbones.spiking_transformer_base import MultiStepLIF
    torch.manual_seed(0)
    model = Spikformer(arch=None, embed_dims=32, depth=1, num_heads=2, T=2).eval()
    calib = make_noise_inputs(3, (32, 32), seed=1)

    fired = {}
    handles = [m.register_forward_hook(
        lambda m, a, o, n=n: fired.__setitem__(n, float(o.mean())) or None)
        for n, m in model.named_modules() if isinstance(m, MultiStepLIF)]
    with torch.no_grad():
        model(calib)
    before = dict(fired)
    assert calibrate_batchnorm(model, calib, batch_size=1) > 0
    assert not model.training
    with torch.no_grad():
        model(calib)
    for h in handles:
        h.remove()
    after = dict(fired)
    deep = 'block.0.mlp.fc1_lif'
    assert before[deep] == 0 and after[deep] > 0.01, (before[deep], after[deep])
    pe = model.patch_embed
    with torch.no_grad():
        y = pe.proj_bn(pe.proj_conv(calib))  # the stem sees the image at every step
    assert y.mean((0, 2, 3)).abs().max() < 1e-4
    assert (y.var((0, 2, 3)) - 1).abs().max() < 0.05


def test_model_specs_is_one_function_for_configs_bare_backbones_and_models(tmp_path):
    """``mmsnn.analysis.erf_models.model_specs`` (the former ``model_specs`` and
    ``comparison_specs`` of the script): the same entry format, unique labels and checkpoint
    checks for ``--models`` and for bare backbones / configs."""
    from mmsnn.analysis.erf_models import MODEL_PRESETS, build_backbone, model_specs
    from mmsnn.utils.errors import MMSNNUserError
    specs = model_specs(models=['qkformer', 'qkformer'], model_checkpoints=['none', '-'], T=3)
    assert [(label, kind) for label, kind, _ in specs] == [('qkformer', 'backbone'),
                                                           ('qkformer_1', 'backbone')]
    assert specs[0][2] == (dict(MODEL_PRESETS['qkformer'], T=3), None)
    specs = model_specs(mixers=['conv', 'conv'], T=2, neuron='LIF')
    assert [label for label, _, _ in specs] == ['conv', 'conv_1']
    assert specs[0][2] == (dict(type='MetaSDT', mixer='conv', T=2, neuron_cfg=dict(type='LIF'),
                                arch='s'), None)
    missing = str(tmp_path / 'x.pth')
    for kw in (dict(models=['qkformer'], model_checkpoints=[missing]),
               dict(configs=[__file__], checkpoints=[missing])):
        with pytest.raises(MMSNNUserError, match='x.pth.* does not exist'):
            model_specs(**kw)
    # one builder: the bare MetaSDT gets the probed taps as out_indices
    backbone, note = build_backbone(dict(type='MetaSDT', embed_dims=(8, 16, 16, 16)), taps=(1, 3))
    assert tuple(backbone.out_indices) == (1, 3) and note == 'random init'
