"""ERF library: golden centre maps, area ratio check values, ST-ERF causality, the
one-forward engine against the recipe written out per sample (``oracle_erf``), mode/RNG
restoration, no import side effects, pictures and the CLI."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

from mmsnn.analysis import (area_ratio, compute_erf, erf_coverage, gaussian_width, layer_erf,
                            make_noise_inputs, spatial_erf, st_erf, temporal_erf)
from mmsnn.models import MetaSDT, convert_reference_checkpoint
from golden_files import meta_sdt_parity

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def tiny(**kw):
    kw.setdefault('embed_dims', (8, 16, 16, 16))
    kw.setdefault('out_indices', (1, 2, 3, 4))
    torch.manual_seed(0)
    return MetaSDT(**kw).eval()


def oracle_erf(model, inputs, target, out_step=-1):
    """The ERF recipe written out, independently of mmsnn.analysis: one sample at a time,
    ``|d (sum over channels of y[t, 0, :, h // 2, w // 2]) / d x|`` averaged over RGB, then
    over the samples. ``target``: an index into the model's returned taps or a module name.
    4-D inputs give ``[H, W]``; 5-D inputs ``[T_in, H, W]`` (one map per input step)."""
    model.eval()
    five_d = inputs.dim() == 5
    maps = []
    for b in range(inputs.shape[1] if five_d else inputs.shape[0]):
        x = (inputs[:, b:b + 1] if five_d else inputs[b:b + 1]).clone().requires_grad_(True)
        if isinstance(target, str):
            caught = []
            handle = dict(model.named_modules())[target].register_forward_hook(
                lambda module, args, out: caught.append(out))
            model(x, keep_time=True) if five_d else model(x)
            handle.remove()
            y = caught[0]  # [T * 1, C, h, w]: time folded into the batch
        else:
            y = model(x, keep_time=True)[target][:, 0] if five_d else model(x)[target]
        y = y[out_step]  # [C, h, w]
        objective = y[:, y.shape[1] // 2, y.shape[2] // 2].sum()
        grad, = torch.autograd.grad(objective, x)
        maps.append(grad.abs().mean(-3)[:, 0] if five_d else grad.abs().mean(-3)[0])
    return torch.stack(maps).mean(0)


# ------------------------------------------------------------------ metrics
def test_area_ratio_uniform_check_values():
    r = area_ratio(np.ones((1024, 1024)))
    assert [round(r[t], 4) for t in (0.2, 0.3, 0.5, 0.99)] == [0.2009, 0.3001, 0.5013, 0.9903]


def test_area_ratio_gaussian_check_values():
    # centred at (H // 2, W // 2) = (512, 512), the same centre as the squares
    y, x = np.mgrid[:1024, :1024]
    g = 1000 * np.exp(-((y - 512) ** 2 + (x - 512) ** 2) / (2 * 100.0 ** 2))
    r = area_ratio(torch.from_numpy(g))
    assert [round(r[t], 4) for t in (0.2, 0.3, 0.5, 0.99)] == [0.0474, 0.0732, 0.1341, 0.5523]


def test_area_ratio_edge_cases():
    assert all(np.isnan(v) for v in area_ratio(np.zeros((9, 9))).values())
    point = np.zeros((9, 9))
    point[4, 4] = 5.0
    r, sides = area_ratio(point, thresholds=(0.5,), return_sides=True)
    assert sides[0.5] == 1 and r[0.5] == pytest.approx(1 / 81)


def test_coverage_and_gaussian_width():
    y, x = np.mgrid[:64, :80]
    g = np.exp(-((y - 32) ** 2 / (2 * 5.0 ** 2) + (x - 40) ** 2 / (2 * 9.0 ** 2)))
    w = gaussian_width(g)
    assert w['sigma_y'] == pytest.approx(5.0, rel=1e-4)
    assert w['sigma_x'] == pytest.approx(9.0, rel=1e-4)
    m = np.zeros((10, 10))
    m[:3] = 1.0
    assert erf_coverage(m) == pytest.approx(0.3)


# ------------------------------------------------------------------ golden parity
@pytest.fixture(scope='module')
def golden():
    return meta_sdt_parity()


@pytest.mark.parametrize('idx', [0, 1, 2])
def test_golden_centre_erf(golden, idx):
    g = golden[idx]
    model = MetaSDT(embed_dims=tuple(g['embed_dims']), mixer=g['variant'],
                    out_indices=(1, 2, 3, 4))
    model.load_state_dict(convert_reference_checkpoint(g['state_dict']), strict=True)
    model = model.double().eval()
    x = g['input'][:1]  # the golden ERF is of sample 0
    for k, key in enumerate(['stage1b', 'stage2', 'stage3', 'stage4']):
        erf = spatial_erf(model, x, output_index=k, grad='abs', reduce='mean')
        assert erf.shape == (96, 128)
        err = (erf - g['erf_center'][key]).abs().max().item()
        assert err < 1e-6, f'{g["variant"]} {key}: max error {err:.3e}'
        if k == 0:
            erf_tap1 = erf
    # coverage of the centre ERF of tap 1 equals the share of non-zero pixels of the golden
    # map (the reference implementation's), counted here with numpy
    golden_map = g['erf_center']['stage1b'].numpy()
    golden_coverage = np.count_nonzero(golden_map) / golden_map.size
    assert erf_coverage(erf_tap1) == golden_coverage
    # the README's numbers (doc: conv 0.41, SRB 1.00; MLPixer 0.34 on the golden maps)
    assert round(golden_coverage, 2) == {'conv': 0.41, 'mlpixer': 0.34, 'srb': 1.00}[
        g['variant']]


# ------------------------------------------------------------------ engine
def test_one_forward_matches_naive_and_layers():
    model = tiny(mixer='srb').double()
    x = make_noise_inputs(3, (32, 32), seed=1, dtype=torch.float64)
    targets = {'tap1': 0, 'tap3': 2, 'b3': 'block3.0', 'tap1_layer': 'ConvBlock1_2.0'}
    calls = []
    h = model.register_forward_hook(lambda *a: calls.append(1))
    fast = compute_erf(model, x, targets)
    h.remove()
    assert len(calls) == 1  # all targets from one forward
    for k, target in targets.items():
        ref = oracle_erf(model, x, target)
        assert ref.sum() > 0
        assert torch.allclose(fast.maps[k][0, 0], ref, atol=1e-12, rtol=0), k
    # a tap read from the returned tuple equals the same tap caught from its module
    assert torch.equal(fast.maps['tap1'], fast.maps['tap1_layer'])
    # per-sample sums: their mean is the map's sum
    assert torch.allclose(fast.sums['tap3'].mean(-1), fast.maps['tap3'].sum((-2, -1)))
    # layer_erf stops the forward after the last requested layer
    maps = layer_erf(model, x, ['ConvBlock1_2.0'])
    assert torch.equal(maps['ConvBlock1_2.0'], fast.maps['tap1'][0, 0])
    relu = spatial_erf(model, x, output_index=0, grad='relu', reduce='sum')
    assert (relu >= 0).all() and relu.sum() > 0


def test_modes_and_rng_restored():
    model = tiny()
    model.train()
    model.block3[0].eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    spatial_erf(model, make_noise_inputs(1, (32, 32)), output_index=-1)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_st_erf_causality_multi_step():
    T = 4
    model = tiny(neuron_cfg=dict(type='LIF'), T=T)
    assert model.stateful
    x = make_noise_inputs(2, (32, 32), time_steps=T, seed=0)
    res = compute_erf(model, x, {'tap1': 0, 'tap4': 3}, out_steps='all')
    for name in ('tap1', 'tap4'):
        energy = res.maps[name].sum((-2, -1))  # [out step, in step]
        for t in range(T):
            for j in range(T):
                if j > t:  # the future cannot influence the past
                    assert energy[t, j] == 0, (name, t, j)
                else:
                    assert energy[t, j] > 0, (name, t, j)
    # output step 1 vs input steps 0..3 (the brief's example)
    e1 = res.maps['tap1'][1].sum((-2, -1))
    assert e1[0] > 0 and e1[1] > 0 and e1[2] == 0 and e1[3] == 0
    # ST-ERF / temporal ERF API: delays are read off the last output step
    delays, full = st_erf(model, x, output_indices=(0,), return_result=True)
    assert delays['out0'].shape == (T, 32, 32)
    assert torch.equal(delays['out0'][0], res.maps['tap1'][T - 1, T - 1])
    assert torch.equal(delays['out0'][T - 1], res.maps['tap1'][T - 1, 0])
    mean, std = temporal_erf(model, x, output_indices=(0,))['out0']
    assert mean.shape == std.shape == (T,)
    assert torch.allclose(mean, delays['out0'].sum((-2, -1)))
    # spatial ERF per time step (w.r.t. the same step's frame)
    per_step = spatial_erf(model, x, output_index=0, time_step='all')
    assert per_step.shape == (T, 32, 32)
    assert torch.equal(per_step[2], res.maps['tap1'][2, 2])


@pytest.mark.slow
def test_multi_step_maps_match_the_recipe():
    T = 3
    model = tiny(neuron_cfg=dict(type='LIF'), T=T).double()
    x = make_noise_inputs(2, (32, 32), time_steps=T, seed=4, dtype=torch.float64)
    targets = {'tap2': 1, 'b3': 'block3.0'}
    res = compute_erf(model, x, targets, out_steps='all')
    for k, target in targets.items():
        for t in range(T):
            ref = oracle_erf(model, x, target, out_step=t)  # [T_in, H, W]
            assert ref[:t + 1].sum((-2, -1)).min() > 0
            assert torch.allclose(res.maps[k][t], ref, atol=1e-12, rtol=0), (k, t)


def test_batched_grads_path_runs_and_agrees():
    model = tiny().double()
    x = make_noise_inputs(2, (32, 32), seed=2, dtype=torch.float64)
    a = compute_erf(model, x, {'t1': 0, 't4': 3})
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a fallback to the loop warns: fail on it
        b = compute_erf(model, x, {'t1': 0, 't4': 3}, batched_grads=True)
    assert b.batched_grads and not a.batched_grads  # the vmapped backward really ran
    for k in a.maps:
        assert a.maps[k].sum() > 0
        assert torch.allclose(a.maps[k], b.maps[k], atol=1e-12)


def test_batched_grads_fallback_is_reported():
    class NoVmap(torch.autograd.Function):  # a backward that leaves torch (numpy): no vmap
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return torch.from_numpy(g.detach().numpy() * 2)

    class Net(torch.nn.Module):
        def forward(self, x):
            y = torch.nn.functional.avg_pool2d(NoVmap.apply(x), 3, 1, 1)
            return y, y * y

    x = make_noise_inputs(2, (8, 8), seed=3, dtype=torch.float64)
    loop = compute_erf(Net(), x, {'a': 0, 'b': 1})
    with pytest.warns(UserWarning, match='falling back'):
        fell_back = compute_erf(Net(), x, {'a': 0, 'b': 1}, batched_grads=True)
    assert not fell_back.batched_grads
    for k in loop.maps:
        assert loop.maps[k].sum() > 0 and torch.equal(loop.maps[k], fell_back.maps[k])


def test_taps_outside_out_indices_come_from_the_backbone_stage_table():
    from mmsnn.analysis import backbone_tap_targets
    model = tiny(out_indices=(1, 4))
    # the last module of each stage, per the reference doc's stage table
    assert backbone_tap_targets(model, taps=[0, 1, 2, 3, 4]) == {
        'tap0': 'ConvBlock1_1.0', 'tap1': 0, 'tap2': 'ConvBlock2_2.0', 'tap3': 'block3.5',
        'tap4': 1}
    with pytest.raises(ValueError, match='below their maximum'):
        backbone_tap_targets(tiny(out_indices=(1, 2)), taps=[3])

    class Foreign(torch.nn.Module):  # a backbone that does not name its stage modules
        out_indices = (0, 2)

    assert backbone_tap_targets(Foreign(), taps=[2]) == {'tap2': 1}
    with pytest.raises(ValueError, match='stage_module_names'):
        backbone_tap_targets(Foreign(), taps=[1])


def test_foreign_spikingjelly_state_is_reset():
    from spikingjelly.activation_based import neuron
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1),
                                neuron.LIFNode(step_mode='s'))
    x = make_noise_inputs(1, (8, 8), seed=0)
    clean = compute_erf(model, x, {'out': 0}).maps['out']
    assert clean.sum() > 0
    assert float(model[1].v) == 0.0  # reset afterwards too
    with torch.no_grad():
        model(3 * x)  # leaves a membrane state behind, as a user's forward would
    assert torch.is_tensor(model[1].v)
    assert torch.equal(compute_erf(model, x, {'out': 0}).maps['out'], clean)


def test_no_matplotlib_side_effects_at_import():
    """Importing mmsnn's plotting module (and drawing) leaves the user's backend alone."""
    import importlib

    import matplotlib

    import mmsnn.analysis.plots as plots
    before = matplotlib.get_backend()
    matplotlib.use('svg')  # a backend the user chose
    try:
        plots = importlib.reload(plots)  # runs the module's import-time code again
        image = plots.figure_to_rgb(plots.erf_grid_figure([[np.ones((4, 4))]]))
        assert image.ndim == 3 and image.shape[2] == 3
        assert matplotlib.get_backend() == 'svg'
    finally:
        matplotlib.use(before)


def test_errors_are_clear():
    model = tiny()
    x = make_noise_inputs(1, (32, 32))
    with pytest.raises(KeyError, match='no module named'):
        layer_erf(model, x, ['nope'])
    with pytest.raises(IndexError, match='out of range'):
        spatial_erf(model, x, output_index=7)
    with pytest.raises(ValueError, match='grad must be'):
        spatial_erf(model, x, grad='square')


# ------------------------------------------------------------------ pictures
def _check_png(path, min_hw=(50, 50)):
    from PIL import Image
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    with Image.open(path) as im:
        w, h = im.size
        assert h >= min_hw[0] and w >= min_hw[1]
        arr = np.asarray(im)
    assert arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.std() > 0


def test_pictures(tmp_path):
    from mmsnn.analysis.plots import plot_erf_grid, plot_st_erf, plot_temporal_erf
    maps = [[np.random.rand(16, 20) for _ in range(3)] for _ in range(2)]
    p1 = plot_erf_grid(maps, str(tmp_path / 'grid.png'), row_labels=['a', 'b'],
                       col_labels=['t=0', 't=1', 't=2'])
    p2 = plot_st_erf({'tap1': torch.rand(3, 16, 16)}, str(tmp_path / 'st.png'))
    p3 = plot_temporal_erf({'tap1': (torch.tensor([3., 1., .1]), torch.tensor([.3, .2, .05]))},
                           str(tmp_path / 'temporal.png'))
    for p in (p1, p2, p3):
        _check_png(p)


# ------------------------------------------------------------------ CLI
ST_ERF = 'tools/analysis/st_erf.py'


def test_cli_compare_bare_backbones(tmp_path, run_tool):
    out = tmp_path / 'out'
    proc = run_tool(ST_ERF, '--embed-dims', '8', '16', '16', '16', '--mixers', 'conv', 'srb',
                    '--T', '2', '--neuron', 'LIF', '--taps', '1', '4', '--num-inputs', '2',
                    '--size', '32', '32', '--batch-size', '1', '--out-dir', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert 'A@0.2' in text and 'coverage' in text and 'srb' in text
    for f in ('compare.png', 'compare_st_erf.png', 'compare_temporal.png'):
        _check_png(str(out / f))
    summary = json.loads((out / 'summary.json').read_text())
    assert set(summary) == {'conv', 'srb'} and set(summary['srb']['taps']) == {'tap1', 'tap4'}
    assert (out / 'srb' / 'st_erf_tap4.npy').is_file()


CLI_ERRORS = [
    (['missing_config.py'], "config file 'missing_config.py' does not exist"),
    (['--checkpoint', 'x.pth'], '--checkpoint needs config files'),
    ([], 'nothing to analyse'),
    (['--backbone', 'dict(type=1+'], 'is not a dict of literals'),
]


@pytest.fixture(scope='module')
def cli_refusals(tmp_path_factory, run_tool_each):
    """The tool on each argv of :data:`CLI_ERRORS`, then on a config whose checkpoint does not
    exist, all in one process: ([CompletedProcess per CLI_ERRORS], CompletedProcess)."""
    tmp = tmp_path_factory.mktemp('st_erf_refusals')
    cfg = tmp / 'c.py'
    cfg.write_text("model = dict(type='MetaSDT')\n")
    runs = [(ST_ERF, argv) for argv, _ in CLI_ERRORS]
    procs = run_tool_each(runs + [(ST_ERF, [cfg, '--checkpoint', tmp / 'nope.pth'])])
    return procs[:-1], procs[-1]


@pytest.mark.parametrize('case', range(len(CLI_ERRORS)),
                         ids=[' '.join(argv) or 'no-args' for argv, _ in CLI_ERRORS])
def test_cli_errors(case, cli_refusals):
    needle = CLI_ERRORS[case][1]
    proc = cli_refusals[0][case]
    assert proc.returncode == 2
    err = proc.stderr
    assert needle in err and 'Traceback' not in err


def test_cli_missing_checkpoint(cli_refusals):
    proc = cli_refusals[1]
    assert proc.returncode == 2
    assert 'does not exist' in proc.stderr


def test_cli_config_with_checkpoint(tmp_path, run_tool):
    cfg = tmp_path / 'seg_tiny.py'
    cfg.write_text(
        "default_scope = 'mmseg'\n"
        "custom_imports = dict(imports=['mmsnn'], allow_failed_imports=False)\n"
        "model = dict(type='EncoderDecoder',\n"
        "    backbone=dict(type='MetaSDT', embed_dims=(8, 16, 16, 16), out_indices=(0, 1, 2, 4)),\n"
        "    decode_head=dict(type='FCNHead', in_channels=16, in_index=-1, channels=8,\n"
        "                     num_convs=1, num_classes=3))\n")
    torch.manual_seed(3)
    trained = MetaSDT(embed_dims=(8, 16, 16, 16), out_indices=(0, 1, 2, 4))
    ckpt = tmp_path / 'iter_10.pth'  # a segmentor checkpoint: backbone.* keys
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in trained.state_dict().items()}},
               str(ckpt))
    out = tmp_path / 'out'
    proc = run_tool(ST_ERF, cfg, '--checkpoint', ckpt, '--taps', '1', '3', '--num-inputs', '1',
                    '--size', '32', '--out-dir', out,
                    '--cfg-options', 'model.decode_head.num_classes=5')
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert 'checkpoint iter_10.pth' in text and 'missing' not in text
    # tap 3 is not in out_indices: read from its stage's last block; same maps as by hand
    summary = json.loads((out / 'summary.json').read_text())
    assert set(summary['seg_tiny']['taps']) == {'tap1', 'tap3'}
    ref = spatial_erf(trained, make_noise_inputs(1, (32, 32), seed=0), output_index=1)
    saved = torch.from_numpy(np.load(out / 'seg_tiny' / 'erf_tap1.npy'))  # float32, as ref
    assert torch.allclose(saved[-1], ref)
    _check_png(str(out / 'compare.png'))
    # a checkpoint of another architecture: one clear line
    other = tmp_path / 'other.pth'
    torch.save(MetaSDT(embed_dims=(16, 16, 16, 16)).state_dict(), str(other))
    proc = run_tool(ST_ERF, cfg, '--checkpoint', other, '--size', '32')
    assert proc.returncode == 2
    err = proc.stderr
    assert 'does not fit' in err and 'Traceback' not in err
