"""MetaSDT backbone: numerical parity with the reference, sizes, token layout, time steps."""
import pytest
import torch
import torch.nn as nn

from mmsnn.models import MetaSDT, convert_reference_checkpoint, load_pretrained
from mmsnn.models.reference_conversion import CheckpointMismatchError
from mmsnn.models.mixers import MLPixerMixer, SplashReconstructMixer, tokens_to_linear
from golden_files import meta_sdt_parity

TAP_KEYS = ('stage1a', 'stage1b', 'stage2', 'stage3', 'stage4')


@pytest.fixture(scope='module')
def golden():
    return {g['variant']: g for g in meta_sdt_parity()}


def reference_model(g):
    model = MetaSDT(embed_dims=g['embed_dims'], mlp_ratio=g['mlp_ratio'], mixer=g['variant'],
                    out_indices=(0, 1, 2, 3, 4))
    sd = convert_reference_checkpoint(g['state_dict'])
    model.load_state_dict(sd, strict=True)
    return model.double().eval()


@pytest.mark.parametrize('variant', ['conv', 'mlpixer', 'srb'])
def test_parity_with_reference(golden, variant):
    g = golden[variant]
    model = reference_model(g)
    x = g['input'].clone().requires_grad_(True)
    taps = model(x)
    for key, out in zip(TAP_KEYS, taps):
        assert out.shape == g['outputs'][key].shape, key
        err = (out - g['outputs'][key]).abs().max().item()
        assert err < 1e-6, f'{variant} {key}: max abs error {err}'
    loss = sum((out * g['loss_weights'][k]).sum() for k, out in zip(TAP_KEYS, taps))
    (grad,) = torch.autograd.grad(loss, x)
    err = (grad - g['input_grad']).abs().max().item()
    assert err < 1e-6, f'{variant} input grad: max abs error {err}'
    assert g['input_grad'].abs().sum() > 0  # the comparison is not between zeros


@pytest.mark.parametrize('variant', ['conv', 'mlpixer', 'srb'])
def test_parity_center_erf(golden, variant):
    g = golden[variant]
    model = reference_model(g)
    x = g['input'][:1].clone().requires_grad_(True)
    taps = model(x)
    for key, out in zip(TAP_KEYS[1:], taps[1:]):
        h, w = out.shape[-2:]
        (grad,) = torch.autograd.grad(out[0, :, h // 2, w // 2].sum(), x, retain_graph=True)
        erf = grad[0].abs().mean(0)
        err = (erf - g['erf_center'][key]).abs().max().item()
        assert err < 1e-6, f'{variant} {key} ERF: max abs error {err}'


# (backbone-only parameters in millions, reference doc section 2)
PARAMS = {
    ('s', 'conv', 4): 4.91, ('s', 'mlpixer', 4): 4.30, ('s', 'mlpixer', 6): 5.04,
    ('s', 'srb', 4): 4.61,
    ('m', 'conv', 4): 9.78, ('m', 'mlpixer', 4): 8.42, ('m', 'mlpixer', 6): 9.86,
    ('m', 'srb', 4): 9.10,
    ('l', 'conv', 4): 18.63, ('l', 'mlpixer', 4): 16.20, ('l', 'mlpixer', 6): 18.97,
    ('l', 'srb', 4): 17.41,
}


@pytest.mark.parametrize('arch,mixer,ratio', sorted(PARAMS))
def test_parameter_counts(arch, mixer, ratio):
    model = MetaSDT(arch=arch, mixer=mixer, mlp_ratio=ratio)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(n, 2) == PARAMS[(arch, mixer, ratio)], f'{arch}/{mixer}/r{ratio}: {n:.4f}M'


# ---------------------------------------------------------------- token layout
C, H, W, R = 5, 6, 7, 2  # C does not divide H*W = 42, and the map is not square


def dependency(fn, shape, out_index):
    """Set of flat input positions the flat output element ``out_index`` depends on."""
    x = torch.randn(1, *shape, dtype=torch.float64, requires_grad=True)
    y = fn(x)
    (g,) = torch.autograd.grad(y.flatten()[out_index], x)
    return set(torch.nonzero(g.flatten()).flatten().tolist())


def linear_net(cls, layout):
    torch.manual_seed(0)
    m = cls(C, mlp_ratio=R, neuron=nn.Identity, token_layout=layout).double()
    for p in m.parameters():  # dense, non-zero weights so every structural path shows
        nn.init.uniform_(p, 0.5, 1.0)
    return m.eval()


@pytest.mark.parametrize('out_index', [0, 17, 4 * H * W - 1])
def test_tokens_to_linear_raster_is_raw_reshape(out_index):
    fc = nn.Linear(C, R * C, bias=False).double()
    nn.init.uniform_(fc.weight, 0.5, 1.0)
    deps = dependency(lambda x: tokens_to_linear(fc, x, 'raster'), (C, H, W), out_index)
    m = out_index // (R * C)  # output run m (R*C elements) comes from input run m
    assert deps == set(range(m * C, (m + 1) * C))


def test_tokens_to_linear_pixel_is_channel_mlp():
    fc = nn.Linear(C, R * C, bias=False).double()
    nn.init.uniform_(fc.weight, 0.5, 1.0)
    out_index = 3 * H * W + 2 * W + 5  # channel 3, pixel (2, 5)
    deps = dependency(lambda x: tokens_to_linear(fc, x, 'pixel'), (C, H, W), out_index)
    assert deps == {c * H * W + 2 * W + 5 for c in range(C)}


def test_mlpixer_raster_mixes_one_raster_run():
    # fc2's input runs are exactly fc1's output runs, so output run m depends on input run m
    # (through the residual, also on itself). A run straddles channels: C does not divide HW.
    mixer = linear_net(MLPixerMixer, 'raster')
    out_index = 8 * C + 1  # run 8 = flat [40, 45): channel 0 cols ... and channel 1
    deps = dependency(mixer.mix, (C, H, W), out_index)
    assert deps == set(range(8 * C, 9 * C))
    assert {p // (H * W) for p in deps} == {0, 1}  # crosses the channel boundary


def test_mlpixer_pixel_mixes_channels_of_one_pixel():
    mixer = linear_net(MLPixerMixer, 'pixel')
    out_index = 2 * H * W + 4 * W + 6
    deps = dependency(mixer.mix, (C, H, W), out_index)
    assert deps == {c * H * W + 4 * W + 6 for c in range(C)}


def srb_raster_prediction(h, w):
    """Input positions an SRB output at pixel (h, w) reads: conv3x3 over the splashed map
    (R*C channels, all pixels within 1), each position p of it coming from input run p//(R*C)."""
    deps = set()
    for c in range(R * C):
        for hh in range(max(h - 1, 0), min(h + 2, H)):
            for ww in range(max(w - 1, 0), min(w + 2, W)):
                run = (c * H * W + hh * W + ww) // (R * C)
                deps |= set(range(run * C, (run + 1) * C))
    return deps


@pytest.mark.parametrize('h,w', [(0, 0), (3, 4), (5, 6)])
def test_srb_raster_splashes_far(h, w):
    mixer = linear_net(SplashReconstructMixer, 'raster')
    deps = dependency(mixer.mix, (C, H, W), 1 * H * W + h * W + w)
    assert deps == srb_raster_prediction(h, w)
    rows = {(p % (H * W)) // W for p in deps}
    assert max(rows) - min(rows) > 2  # reaches beyond the 3x3 window: a global mixer


def test_srb_pixel_is_local():
    mixer = linear_net(SplashReconstructMixer, 'pixel')
    h, w = 3, 4
    deps = dependency(mixer.mix, (C, H, W), h * W + w)
    assert deps == {c * H * W + hh * W + ww for c in range(C)
                    for hh in range(h - 1, h + 2) for ww in range(w - 1, w + 2)}


# ---------------------------------------------------------------- time steps
TINY = dict(embed_dims=(8, 16, 16, 16), out_indices=(1, 4))


@pytest.mark.parametrize('neuron', ['ILIF', 'LIF'])
def test_multistep_depends_on_time_and_resets(neuron):
    torch.manual_seed(0)
    model = MetaSDT(**TINY, mixer='srb', T=4, neuron_cfg=dict(type=neuron)).eval()
    x = torch.randn(2, 3, 32, 32) * 3
    with torch.no_grad():
        a = model(x, keep_time=True)
        b = model(x, keep_time=True)
    for ta, tb in zip(a, b):
        assert ta.shape[:2] == (4, 2)
        assert torch.equal(ta, tb), 'membrane state leaked from one forward into the next'
    # same input at every step, yet the membrane makes the steps differ
    assert any(not torch.allclose(t[0], t[-1]) for t in a)
    merged = model(x)
    assert torch.allclose(merged[0], a[0].mean(0))


def _flops(model, x):
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()


@pytest.mark.slow
def test_integer_quantiser_time_is_virtual():
    torch.manual_seed(0)
    m1 = MetaSDT(**TINY, mixer='mlpixer', T=1).eval()
    m4 = MetaSDT(**TINY, mixer='mlpixer', T=4).eval()
    m4.load_state_dict(m1.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(m1(x), m4(x, keep_time=True)):
            assert b.shape[0] == 4 and torch.equal(a, b[2])
    # the T = 4 quantiser model costs one step; a real multi-step model costs T steps
    lif4 = MetaSDT(**TINY, mixer='mlpixer', T=4, neuron_cfg=dict(type='LIF')).eval()
    one_step = _flops(m1, x)
    assert one_step > 0
    assert _flops(m4, x) == one_step
    assert _flops(lif4, x) == 4 * one_step


def test_time_input_with_wrong_steps_is_clear():
    model = MetaSDT(**TINY, T=4, neuron_cfg=dict(type='LIF'))
    with pytest.raises(ValueError, match='T=4'):
        model(torch.randn(3, 1, 3, 32, 32))


# ---------------------------------------------------------------- options
def test_out_indices_strides_and_last_stage_stride():
    x = torch.randn(1, 3, 64, 96)
    for stride, expect in ((1, 16), (2, 32)):
        m = MetaSDT(**dict(TINY, out_indices=(0, 1, 2, 3, 4)), last_stage_stride=stride).eval()
        outs = m(x)
        assert [64 // o.shape[2] for o in outs] == m.out_strides == [2, 4, 8, 16, expect]
        assert [o.shape[1] for o in outs] == m.out_channels == [4, 8, 16, 16, 16]


def test_out_indices_build_only_the_stages_they_use(golden):
    """Stages after the last tap are not built: every parameter gets a gradient (what DDP with
    find_unused_parameters=False needs), and a full checkpoint still loads."""
    MetaSDT(**dict(TINY, out_indices=(0, 2)), frozen_stages=4).train()  # freezes what exists
    m = MetaSDT(**dict(TINY, out_indices=(0, 2))).train()
    assert not any(hasattr(m, name) for name in ('downsample3', 'block3', 'downsample4',
                                                  'block4'))
    out = m(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in out] == [4, 16]
    sum(o.sum() for o in out).backward()
    unused = [k for k, p in m.named_parameters() if p.grad is None]
    assert not unused, f'parameters without gradient: {unused[:5]}'
    # a checkpoint of the whole backbone loads; the keys of the unbuilt stages are skipped
    g = golden['srb']
    short = MetaSDT(embed_dims=g['embed_dims'], mlp_ratio=g['mlp_ratio'], mixer='srb',
                    out_indices=(1, 2))
    missing, unexpected = load_pretrained(short, g['state_dict'])
    assert missing == [] and unexpected == []
    assert torch.equal(short.ConvBlock2_2[0].fc1.weight,
                       g['state_dict']['ConvBlock2_2.0.fc1.weight'])


def test_drop_path_really_drops():
    torch.manual_seed(0)
    m = MetaSDT(**TINY, drop_path_rate=0.5).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    a = m(x)[1]
    torch.manual_seed(2)
    b = m(x)[1]
    assert not torch.allclose(a, b)
    m.eval()
    assert torch.equal(m(x)[1], m(x)[1])


def _record_drop_paths(model):
    """Forward hooks on every drop-path module; returns the list of (input, output) pairs."""
    seen = []
    for name, m in model.named_modules():
        if name.endswith('drop_path') and not isinstance(m, nn.Identity):
            m.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    return seen


@pytest.mark.parametrize('neuron', [dict(type='LIF'), None])
def test_drop_path_drops_a_sample_at_all_its_time_steps(neuron):
    """On time-folded [T*B] tensors a sample's branch is dropped at every step or at none."""
    T, B = 4, 3
    torch.manual_seed(0)
    m = MetaSDT(**TINY, mixer='srb', T=T, neuron_cfg=neuron, drop_path_rate=0.9).train()
    seen = _record_drop_paths(m)
    # a stateful model repeats a 4-D input over T; the quantiser one gets T frames
    x = 3 * (torch.randn(B, 3, 32, 32) if neuron else torch.randn(T, B, 3, 32, 32))
    with torch.no_grad():
        m(x)
    assert seen
    dropped_any = kept_any = False
    for inp, out in seen:
        assert out.shape[0] == T * B
        # dropping shows as an all-zero output; look at samples whose branch is non-zero at
        # every step (a branch without spikes is zero anyway)
        live = (inp.reshape(T, B, -1) != 0).any(-1).all(0)  # [B]
        dropped = (out.reshape(T, B, -1) == 0).all(-1)[:, live]  # [T, live samples]
        assert (dropped == dropped[:1]).all(), f'drop decisions differ over time: {dropped}'
        dropped_any |= bool(dropped.any())
        kept_any |= bool((~dropped).any())
    assert dropped_any and kept_any


@pytest.mark.slow
def test_with_cp_gives_same_numbers_and_grads():
    torch.manual_seed(0)
    a = MetaSDT(**TINY, mixer='srb').train()
    b = MetaSDT(**TINY, mixer='srb', with_cp=True).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for m in (a, b):
        sum(o.sum() for o in m(x)).backward()
    ga = a.ConvBlock1_2[0].fc1.weight.grad
    assert ga.abs().sum() > 0 and torch.allclose(ga, b.ConvBlock1_2[0].fc1.weight.grad)


@pytest.mark.parametrize('neuron', [None, dict(type='LIF'), dict(type='ILIF')])
def test_compact_spike_storage_is_exact(neuron, monkeypatch):
    from mmsnn.models import neurons
    packed = []
    pack = neurons._pack_spikes

    def counting_pack(t):  # records what compact_spike_storage() really stored as uint8
        out = pack(t)
        if isinstance(out, tuple):
            packed.append(out[0].dtype)
        return out

    monkeypatch.setattr(neurons, '_pack_spikes', counting_pack)
    torch.manual_seed(0)
    T = 1 if neuron is None else 2
    a = MetaSDT(**TINY, mixer='srb', compact_spikes=False, T=T, neuron_cfg=neuron).train()
    b = MetaSDT(**TINY, mixer='srb', compact_spikes=True, T=T, neuron_cfg=neuron).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    grads, n_packed = [], []
    for m in (a, b):
        xi = x.clone().requires_grad_(True)
        sum((o * o).sum() for o in m(xi)).backward()
        grads.append((xi.grad, m.block3[0].attn.v_conv[0].weight.grad))
        n_packed.append(len(packed))
    assert grads[0][0].abs().sum() > 0
    assert all(torch.equal(u, v) for u, v in zip(*grads))
    # every conv but the stem's reads a neuron's output, which must have been stored compact
    convs = sum(isinstance(mod, (nn.Conv1d, nn.Conv2d)) for mod in b.modules()) - 1
    assert n_packed[0] == 0, 'compact_spikes=False packed tensors'
    assert n_packed[1] >= convs, f'only {n_packed[1]} spike tensors packed for {convs} convs'
    assert set(packed) == {torch.uint8}


def test_frozen_stages_and_norm_eval():
    m = MetaSDT(**TINY, frozen_stages=1, norm_eval=True).train()
    assert not any(p.requires_grad for p in m.downsample1_2.parameters())
    assert all(p.requires_grad for p in m.downsample2.parameters())
    assert not any(mod.training for mod in m.modules() if isinstance(mod, nn.BatchNorm2d))


def test_unknown_arch_and_mixer_are_clear():
    with pytest.raises(KeyError, match="choose one of"):
        MetaSDT(arch='huge')
    with pytest.raises(KeyError, match="'srb'"):
        MetaSDT(mixer='srbb')


# ---------------------------------------------------------------- checkpoints
def test_convert_reference_checkpoint_layouts(golden):
    ref = golden['srb']['state_dict']
    imagenet = {'model': {**ref, 'head.weight': torch.zeros(10, 96), 'head.bias': torch.zeros(10)}}
    detector = {'state_dict': {**{f'backbone.{k}': v for k, v in ref.items()},
                               'neck.lateral_convs.0.conv.weight': torch.zeros(1)}}
    ddp = {f'module.{k}': v for k, v in ref.items()}
    for ckpt in (ref, imagenet, detector, ddp):
        sd = convert_reference_checkpoint(ckpt)
        assert set(sd) == set(ref)
        assert all(torch.equal(sd[k], ref[k]) for k in ref)


def test_pretrained_init_reports_keys(golden, tmp_path):
    from mmengine.logging import MMLogger
    log_file = tmp_path / 'init.log'
    MMLogger.get_instance('test_pretrained_init', log_file=str(log_file))
    g = golden['mlpixer']
    sd = dict(g['state_dict'])
    dropped = 'block4.1.mlp.fc2_bn.bias'
    sd.pop(dropped)
    sd['extra.weight'] = torch.zeros(1)
    path = tmp_path / 'ref.pth'
    torch.save({'model': sd}, path)
    model = MetaSDT(embed_dims=g['embed_dims'], mixer='mlpixer',
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    text = log_file.read_text()
    assert dropped in text and 'extra.weight' in text
    assert torch.equal(model.block3[0].attn.q_conv[0].weight,
                       g['state_dict']['block3.0.attn.q_conv.0.weight'])


def test_wrong_size_checkpoint_names_keys(golden):
    model = MetaSDT(arch='t', mixer='srb')
    with pytest.raises(CheckpointMismatchError, match='downsample1_1.encode_conv.weight'):
        load_pretrained(model, golden['srb']['state_dict'])
