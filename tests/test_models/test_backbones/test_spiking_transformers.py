"""Spikformer, SDT v1 and QKFormer against the reference implementations' golden files.

Every file in ``tests/data/goldens/snn_transformers/`` (packed losslessly from the
reference's ``shared/golden/snn_transformers``) and every file named in ``MMSNN_ZOO_GOLDENS``
(os.pathsep-separated, same layout, ``.pt`` or packed) is one test id: the model
is built from the file's ``config`` (the reference constructor's kwargs), loads its
``state_dict`` through the family's checkpoint filter, and must reproduce in float64 every
stored output, stage, spike map (zero flips) and firing rate, and every stored variant.
The layout of a golden file is described in ``shared/docs/snn_transformers.md`` section 4.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsnn.models import QKFormer, SDTv1, Spikformer, load_pretrained
from mmsnn.models.backbones import REFERENCE_CLASSES
from mmsnn.models.backbones.spiking_transformer_base import MultiStepLIF
from golden_files import golden_files, golden_name, golden_path, read_golden

TOL = 1e-10

#: our arguments that reproduce the numbers of a golden file's main result
#: (its ``semantics``): QKFormer's main result keeps the reference's batch-mixing proj_lif
MAIN_OVERRIDES = {'hierarchical_spiking_transformer': dict(stage3_proj_lif_steps='folded')}
#: golden variant name -> our arguments that reproduce it
VARIANT_OVERRIDES = {'proj_lif_over_T': dict(stage3_proj_lif_steps='time')}


def golden_paths():
    """The packed goldens in tests/data/goldens/snn_transformers plus those in
    MMSNN_ZOO_GOLDENS; none at all is a failing test id, not a skip."""
    paths = golden_files('snn_transformers', 'MMSNN_ZOO_GOLDENS')
    params = [pytest.param(p, id=golden_name(p)) for p in paths]
    if not paths:
        params.append(pytest.param(golden_path('snn_transformers/none'), id='no-goldens'))
    return params


load_golden = read_golden


def unpack_spikes(packed):
    shape = tuple(packed['shape'])
    bits = np.unpackbits(packed['bits'].numpy(), count=int(np.prod(shape)))
    return torch.from_numpy(bits.reshape(shape).astype(np.float64))


def build_from_golden(g, **overrides):
    cls = REFERENCE_CLASSES.get(g['reference_class'])
    assert cls is not None, (f"no mmsnn model for reference class {g['reference_class']!r}; "
                             f'known: {sorted(REFERENCE_CLASSES)}')
    kw = dict(MAIN_OVERRIDES.get(g['reference_class'], {}))
    kw.update(overrides)
    model = cls.from_reference_config(g['config'], T=g['T'], **kw)
    sd = model.checkpoint_filter(g['state_dict'])
    model.load_state_dict(sd, strict=True)
    return model.double().eval(), sd


def run_recorded(model, x, stage_names):
    """Logits, {stage: output} (forward hooks; 'head.input' by a pre-hook) and
    {lif name: spikes} of every LIF that ran."""
    modules = dict(model.named_modules())
    stages, spikes, handles = {}, {}, []

    def keep(store, name, pre=False):
        def hook(module, args, output=None):
            y = args[0] if pre else output
            y = y[0] if isinstance(y, tuple) else y
            assert name not in store, f'{name} ran twice'
            store[name] = y.detach().clone()
        return hook

    for name in stage_names:
        if name.endswith('.input'):
            owner = name[:-len('.input')]
            assert owner in modules, f'stage {name}: no module {owner}'
            handles.append(modules[owner].register_forward_pre_hook(keep(stages, name, True)))
        else:
            assert name in modules, f'stage {name}: no module of that name in the model'
            handles.append(modules[name].register_forward_hook(keep(stages, name)))
    for name, m in modules.items():
        if isinstance(m, MultiStepLIF):
            handles.append(m.register_forward_hook(keep(spikes, name)))
    try:
        with torch.no_grad():
            out = model.classify(x)
    finally:
        for h in handles:
            h.remove()
    return out, stages, spikes


def assert_close(name, got, want):
    assert tuple(got.shape) == tuple(want.shape) or got.numel() == want.numel(), \
        f'{name}: shape {tuple(got.shape)} vs golden {tuple(want.shape)}'
    got = got.reshape(want.shape)
    assert got.dtype == torch.float64, f'{name}: computed in {got.dtype}, not float64'
    err = (got - want).abs().max().item()
    assert err <= TOL, f'{name}: max abs error {err:.3e} > {TOL}'


def check_spikes(golden_spikes, golden_rates, spikes):
    assert set(spikes) == set(golden_spikes), (
        f'LIFs that ran: only ours {sorted(set(spikes) - set(golden_spikes))}, only the '
        f'reference {sorted(set(golden_spikes) - set(spikes))}')
    for name, packed in golden_spikes.items():
        want = unpack_spikes(packed)
        got = spikes[name]
        assert got.numel() == want.numel(), f'{name}: {tuple(got.shape)} vs {tuple(want.shape)}'
        flips = int((got.reshape(want.shape) != want).sum())
        assert flips == 0, f'{name}: {flips} of {want.numel()} spikes differ'
        rate = got.mean().item()
        assert abs(rate - golden_rates[name]) <= 1e-12, \
            f'{name}: firing rate {rate} vs golden {golden_rates[name]}'


@pytest.mark.parametrize('path', golden_paths())
def test_golden(path):
    g = load_golden(path)
    model, sd = build_from_golden(g)
    # parameters: ours + the reference's unused ones (dropped by the filter) = the reference's
    dropped = sum(v.numel() for k, v in g['state_dict'].items() if k not in sd)
    assert sum(p.numel() for p in model.parameters()) + dropped == g['param_count']

    out, stages, spikes = run_recorded(model, g['input'], list(g['stages']))
    assert_close('output', out, g['output'])
    for name, want in g['stages'].items():
        assert_close(name, stages[name], want)
    check_spikes(g['spikes'], g['firing_rates'], spikes)

    for vname, variant in g.get('variants', {}).items():
        assert vname in VARIANT_OVERRIDES, (f'variant {vname!r} of {path.name} has no mmsnn '
                                            'arguments in VARIANT_OVERRIDES')
        vmodel, _ = build_from_golden(g, **VARIANT_OVERRIDES[vname])
        vout, vstages, vspikes = run_recorded(vmodel, g['input'], list(variant['stages']))
        assert_close(f'{vname}: output', vout, variant['output'])
        for name, want in variant['stages'].items():
            assert_close(f'{vname}: {name}', vstages[name], want)
        for name, rate in variant['firing_rates'].items():
            got = vspikes[name].mean().item()
            assert abs(got - rate) <= 1e-12, f'{vname}: {name} rate {got} vs {rate}'


# --------------------------------------------------------------------------- family choices
def _shared(name):
    return load_golden(golden_path(f'snn_transformers/{Path(name).stem}'))


def test_spikformer_token_selection_reproduces_reference():
    """The reference's per-block token selection (token_select=True) gives the reference's
    logits on the golden's square grid, and refuses a grid taller than wide with one line."""
    g = _shared('spikformer.pt')
    model, _ = build_from_golden(g, token_select=True)
    blocks = [n for n in g['stages'] if n.startswith('block.') and n.count('.') == 1]
    out, stages, _ = run_recorded(model, g['input'], blocks)
    assert_close('output', out, g['output'])
    for name in blocks:  # scattered back into natural token order
        assert_close(name, stages[name], g['stages'][name])
    tall = torch.zeros(1, 3, 96, 64, dtype=torch.float64)
    with pytest.raises(ValueError, match='taller than|wide as tall'):
        model.classify(tall)
    plain, _ = build_from_golden(g)  # the default block takes any grid
    assert plain.classify(tall).shape == (1, g['config']['num_classes'])


def test_qkformer_default_does_not_mix_the_batch():
    """stage3 proj_lif over T (default): an image's output does not depend on its batch;
    the reference's folded order does, and both agree at batch 1."""
    g = _shared('qkformer.pt')
    x = g['input']
    fixed, _ = build_from_golden(g, stage3_proj_lif_steps='time')
    folded, _ = build_from_golden(g)
    with torch.no_grad():
        both = fixed.classify(x)
        for b in range(x.shape[0]):
            alone = fixed.classify(x[b:b + 1])
            assert torch.equal(alone[0], both[b])
            assert torch.equal(alone, folded.classify(x[b:b + 1]))
        mixed = folded.classify(x)
    assert not torch.equal(mixed[1], folded.classify(x[1:2])[0])


# --------------------------------------------------------------------------- backbone use
TINY = {
    'Spikformer': dict(type='Spikformer', arch=None, embed_dims=32, depth=1, num_heads=2, T=2),
    'SDTv1': dict(type='SDTv1', arch=None, embed_dims=32, depth=1, num_heads=2, T=2),
    'QKFormer': dict(type='QKFormer', arch=None, embed_dims=32, depth=4, num_heads=2, T=2),
}
#: stage 3 / stage 4 taps of each golden: (tokenizer output, last block) stage names
TAP_STAGES = {'spikformer.pt': ('patch_embed', 'block.1'), 'sdt_v1.pt': ('patch_embed', 'block.1'),
              'qkformer.pt': ('patch_embed3', 'stage3.1')}


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('name', sorted(TINY))
def test_registered_taps_and_strides(name, scope):
    from mmengine.registry import init_default_scope
    from mmsnn.registry import get_registry
    init_default_scope(scope)
    model = get_registry('model', scope).build(dict(TINY[name], out_indices=(0, 1, 2, 3, 4)))
    assert model.out_strides == [2, 4, 8, 16, 16]
    assert model.out_channels == [4, 8, 16, 32, 32]
    H, W = 40, 72  # not multiples of 16: every stride-2 step maps n -> ceil(n / 2)
    taps = model(torch.randn(3, 3, H, W))
    for tap, c, s in zip(taps, model.out_channels, model.out_strides):
        assert tap.shape == (3, c, -(-H // s), -(-W // s))
    timed = model(torch.randn(2, 3, 3, H, W), keep_time=True)  # [T, B, ...] frames
    assert [t.shape[:2] for t in timed] == [(2, 3)] * 5
    with pytest.raises(ValueError, match='T=2'):
        model(torch.randn(3, 3, 3, H, W))
    model.train()
    loss = sum(t.float().mean() for t in model(torch.randn(2, 3, H, W)))
    loss.backward()  # surrogate gradients reach the stem
    stem = next(p for n, p in model.named_parameters() if 'proj_conv' in n)
    assert stem.grad is not None and stem.grad.abs().sum() > 0


@pytest.mark.parametrize('name', sorted(TINY))
def test_frozen_stages_and_norm_eval(name):
    from mmsnn.registry import get_registry
    cfg = dict(TINY[name], frozen_stages=1, norm_eval=True)
    model = get_registry('model', 'mmdet').build(cfg).train()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('patch_embed', 'stage1')) for n in frozen)
    assert any(p.requires_grad for n, p in model.named_parameters() if 'proj_conv' in n)
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize('fname', sorted(TAP_STAGES))
def test_imagenet_checkpoint_through_the_converter(fname, tmp_path):
    """A reference ImageNet checkpoint ({'model': sd} with the classifier) loads into the
    det/seg backbone through load_pretrained with every key used, and taps 3 and 4 are the
    reference's tokenizer output and last block."""
    g = _shared(fname)
    cls = REFERENCE_CLASSES[g['reference_class']]
    ckpt = tmp_path / 'in1k.pth'
    torch.save({'model': g['state_dict'], 'epoch': 300}, ckpt)
    model = cls.from_reference_config(g['config'], T=g['T'], num_classes=0,
                                      out_indices=(3, 4), keep_time=True,
                                      **MAIN_OVERRIDES.get(g['reference_class'], {}))
    missing, unexpected = load_pretrained(model, str(ckpt))
    assert not missing and not unexpected
    model.double().eval()
    with torch.no_grad():
        taps = model(g['input'])
    for tap, stage in zip(taps, TAP_STAGES[fname]):
        assert_close(stage, tap, g['stages'][stage])
    model.init_cfg = dict(type='Pretrained', checkpoint=str(ckpt))
    model.apply(lambda m: m.reset_parameters() if hasattr(m, 'reset_parameters') else None)
    model.init_weights()  # the config route: the same converter
    own = model.state_dict()
    assert set(own) <= set(g['state_dict'])  # the reference's names
    for k, v in own.items():
        assert torch.equal(v.to(g['state_dict'][k].dtype), g['state_dict'][k]), k
    # the converter's by-name route (tools, det/seg conversions): the family's filter applies,
    # the classifier stays for a caller that has one
    from mmsnn.models import convert_reference_checkpoint
    by_name = convert_reference_checkpoint(str(ckpt), 'backbone', backbone=cls.__name__)
    assert set(by_name) == set(own) | {k for k in g['state_dict'] if k.startswith('head.')}


# published sizes (shared/docs/snn_transformers.md): parameters with the 1000-class head,
# less the reference's unused layers
@pytest.mark.parametrize('cls,arch,params', [
    (Spikformer, '8-512', 29_705_768 - 16_384),
    (SDTv1, '8-384', 16_816_536 - 512),
    (QKFormer, '10-384', 16_473_688),
])
def test_published_parameter_counts(cls, arch, params):
    model = cls(arch=arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('fname', sorted(TAP_STAGES))
def test_golden_logits_on_cuda(fname):
    """The same model on a GPU (spikingjelly's torch path, float64) gives the same logits."""
    g = _shared(fname)
    model, _ = build_from_golden(g)
    with torch.no_grad():
        out = model.cuda().classify(g['input'].cuda()).cpu()
    assert_close('output', out, g['output'])


@pytest.mark.parametrize('cls', [Spikformer, SDTv1, QKFormer])
def test_bad_arch_and_width_are_one_clear_error(cls):
    with pytest.raises(KeyError, match=f'unknown {cls.__name__} arch .nope.; choose one of'):
        cls(arch='nope')
    with pytest.raises(ValueError, match=f'{cls.__name__} embed_dims must be a multiple of 8'):
        cls(embed_dims=12, depth=4, num_heads=2)


@pytest.mark.parametrize('key,value', [('TET', True), ('dvs_mode', True),
                                       ('spike_mode', 'plif')])
def test_sdt_v1_reference_options_it_does_not_implement_are_refused(key, value):
    with pytest.raises(ValueError, match=f'SDTv1 supports {key}=.* set {key}='):
        SDTv1.from_reference_config({key: value})
