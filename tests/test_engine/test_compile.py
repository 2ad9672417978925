"""``torch.compile`` on every mmsnn model family.

Most tests compile with ``backend='aot_eager'`` (dynamo's graph capture and AOTAutograd, the
parts that decide graph breaks, recompiles and the backward graph) and run in float64, where
the compiled numbers must equal eager's; inductor (generated C++ kernels) is compiled only
where the kernels are the point: the float64 spike/output equality and the runner's option.
Models are tiny (embed dims 8..32, 32x32 inputs); compiled models are shared per module.
"""
import os.path as osp

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import mmsnn  # noqa: F401  (registers mmsnn's modules)
from mmsnn.engine.compile import add_compile_hooks, compile_kwargs
from mmsnn.models import MetaSDT
from mmsnn.registry import get_registry
from mmsnn.utils.compile import eager_module

#: the full tiny backbone (every stage, transformer blocks included) and its first stages
#: only (stem, downsample, early mixer blocks): compile time grows with the op count, and
#: the blocks of one kind compile alike, so the variants share the full one's later stages
TINY = dict(embed_dims=(8, 16, 16, 16), out_indices=(0, 1, 2, 4))
EARLY = dict(embed_dims=(8, 16, 16, 16), out_indices=(1,))
ILIF = dict(type='ILIF')

#: every backbone family, tiny (T=1 quantiser, T>1 I-LIF, the three time-first transformers)
FAMILIES = {
    'MetaSDT-conv': lambda: MetaSDT(**EARLY, mixer='conv'),
    'MetaSDT-mlpixer': lambda: MetaSDT(**EARLY, mixer='mlpixer'),
    'MetaSDT-srb': lambda: MetaSDT(**TINY, mixer='srb'),
    'MetaSDT-srb-early': lambda: MetaSDT(**EARLY, mixer='srb'),
    'MetaSDT-srb-ILIF-T4': lambda: MetaSDT(**EARLY, mixer='srb', T=4, neuron_cfg=ILIF),
    'MetaSDT-srb-ILIF-T2': lambda: MetaSDT(**EARLY, mixer='srb', T=2, neuron_cfg=ILIF),
    'Spikformer': lambda: _transformer('Spikformer', depth=1),
    'SDTv1': lambda: _transformer('SDTv1', depth=1),
    'QKFormer': lambda: _transformer('QKFormer', depth=4),
}

# every test here compiles a model (seconds to minutes each)
pytestmark = pytest.mark.slow


def _transformer(name, depth):
    return get_registry('model', 'mmdet').build(
        dict(type=name, arch=None, embed_dims=32, depth=depth, num_heads=2, T=2,
             out_indices=(1, 2, 3, 4)))


def _build(name, dtype=torch.float64):
    torch.manual_seed(0)
    model = FAMILIES[name]().to(dtype)
    for m in model.modules():  # non-trivial BN statistics for the eval-mode checks
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _image(seed, size=(32, 32), batch=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=g, dtype=dtype)


def _step(model, x):
    """Forward + backward of a sum of the taps; returns (taps, input grad, param grads)."""
    x = x.clone().requires_grad_(True)
    taps = model(x)
    loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view(t.shape)).sum()
               for t in taps)
    params = [p for p in eager_module(model).parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [x] + params)
    return [t.detach() for t in taps], grads[0], grads[1:]


# --------------------------------------------------------------------------- every family
@pytest.mark.parametrize('name', sorted(set(FAMILIES) - {'MetaSDT-srb-early',
                                                          'MetaSDT-srb-ILIF-T2'}))
def test_every_family_compiles_one_graph_and_trains_like_eager(name):
    """Compiled (aot_eager) train-mode forward and backward: one graph (no graph break) and,
    in float64, the taps and every gradient equal eager's."""
    model = _build(name).train()
    _compiles_one_graph_and_steps_like(model, model, _image(1))


def _compiles_one_graph_and_steps_like(eager, model, x):
    """``model`` compiled with aot_eager: one graph, and its float64 train step (taps, input
    and parameter gradients) equals ``eager``'s (the same model, or a plain twin)."""
    counter = CompileCounterWithBackend('aot_eager')
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=counter)
    taps_e, gx_e, gp_e = _step(eager, x)
    taps_c, gx_c, gp_c = _step(compiled, x)
    torch._dynamo.reset()
    assert counter.frame_count == 1  # a graph break would give two graphs or more
    assert len(gp_c) == len(gp_e)
    for a, b in zip([*taps_e, gx_e, *gp_e], [*taps_c, gx_c, *gp_c]):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
    assert gx_e.abs().sum() > 0  # surrogate gradients reach the input


@pytest.mark.parametrize('T', [1, 4])
def test_with_cp_compiles_one_graph_and_trains_like_plain_eager(T):
    """``with_cp`` under compile (aot_eager): dynamo keeps the checkpointed branches in one
    graph, and in float64 taps, gradients and BN running statistics (counted once: the
    recompute inside the graph is AOTAutograd's) equal the plain eager model's."""
    kw = dict(EARLY, mixer='srb', T=T, neuron_cfg=ILIF if T > 1 else None)
    torch.manual_seed(0)
    plain = MetaSDT(**kw).double().train()
    checkpointed = MetaSDT(**kw, with_cp=True).double().train()
    checkpointed.load_state_dict(plain.state_dict())
    _compiles_one_graph_and_steps_like(plain, checkpointed, _image(7))
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=name)


def test_checkpointed_neck_and_rpn_head_compile_one_graph():
    """The neck's and the RPN head's ``with_cp`` under compile: one graph, the plain numbers."""
    from mmengine.registry import init_default_scope

    from mmsnn.models.det_heads import SpikingRPNHead
    from mmsnn.models.necks import SpikingFPN
    init_default_scope('mmdet')

    class NeckRPN(torch.nn.Module):
        def __init__(self, with_cp):
            super().__init__()
            torch.manual_seed(0)
            self.neck = SpikingFPN([8, 16], 16, num_outs=3, with_cp=with_cp)
            self.rpn = SpikingRPNHead(16, feat_channels=16, with_cp=with_cp, anchor_generator=dict(
                type='AnchorGenerator', scales=[8], ratios=[1.0], strides=[4, 8, 16]))

        def forward(self, x):  # one image's two levels, T = 2 (time-first)
            feats = [x.reshape(2, 1, 8, 16, 16), torch.nn.functional.avg_pool2d(
                x.repeat(1, 2, 1, 1), 2).reshape(2, 1, 16, 8, 8)]
            outs = self.neck(feats)
            cls, reg = self.rpn(outs)
            return [*outs, *cls, *reg]

    plain, checkpointed = NeckRPN(False).double().train(), NeckRPN(True).double().train()
    x = torch.rand(2, 8, 16, 16, generator=torch.Generator().manual_seed(3),
                   dtype=torch.float64) * 3
    _compiles_one_graph_and_steps_like(plain, checkpointed, x)


# --------------------------------------------------------------------------- graph breaks
class _BackboneNeck(torch.nn.Module):
    """Backbone + spiking neck, the part of a detector/segmentor mmsnn owns."""

    def __init__(self, backbone, neck):
        super().__init__()
        self.backbone, self.neck = backbone, neck

    def forward(self, x):
        return self.neck(self.backbone(x))


def _backbone_neck(name, dtype=torch.float32):
    from mmsnn.models.necks import SpikingFPN
    backbone = _build(name, dtype)
    neck = SpikingFPN(backbone.out_channels, 16, num_outs=len(backbone.out_channels))
    return _BackboneNeck(backbone, neck.to(dtype))


@pytest.mark.parametrize('name', ['MetaSDT-srb-early'])
def test_backbone_and_neck_explain_no_graph_break(name):
    """``torch._dynamo.explain`` of backbone + neck in training (autograd on), after a first
    eager call (steady state): one graph, no break. (The later stages' blocks are one graph
    too: ``test_every_family_compiles_one_graph...[MetaSDT-srb]`` builds all of them.)"""
    model = _backbone_neck(name).train()
    x = _image(2, dtype=torch.float32)
    model(x)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    torch._dynamo.reset()
    assert [r.reason for r in explained.break_reasons] == []
    assert explained.graph_break_count == 0 and explained.graph_count == 1


# --------------------------------------------------------------------------- dynamic sizes
def test_new_input_sizes_recompile_at_most_once():
    """mmdet's multi-scale training gives a new (H, W) every iteration: with the default
    ``dynamic=None`` the first size compiles static, the second recompiles once with symbolic
    sizes, and every later size reuses that graph (see :mod:`mmsnn.utils.compile`)."""
    model = _backbone_neck('MetaSDT-srb-early').train()
    counter = CompileCounterWithBackend('aot_eager')
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=counter)
    sizes = [(32, 32), (40, 48), (48, 40), (56, 64), (64, 56), (36, 60)]
    for i, size in enumerate(sizes):
        outs = compiled(_image(i, size, dtype=torch.float32))
        sum(o.sum() for o in outs).backward()
        assert outs[0].shape[-2:] == (-(-size[0] // 4), -(-size[1] // 4))
    assert counter.frame_count == 2, counter.frame_count  # not one per size
    torch._dynamo.reset()


# --------------------------------------------------------------------------- analysis tools
def test_energy_report_of_a_compiled_model_is_the_eager_report():
    """The energy tool counts the eager module under a compiled one (its hooks and its
    ``__torch_function__`` watch need every module call to run in Python)."""
    from mmsnn.analysis.energy import energy_report
    model = _build('MetaSDT-srb-early', torch.float32).eval()
    x = _image(3, dtype=torch.float32)
    eager = energy_report(model, x).as_dict()
    compiled = energy_report(torch.compile(model, backend='aot_eager'), x).as_dict()
    assert compiled == eager


@pytest.mark.parametrize('name', ['MetaSDT-srb-ILIF-T4', 'SDTv1'])
def test_st_erf_of_a_compiled_model_is_the_eager_one(name):
    """ST-ERF differentiates through the eager module under a compiled one."""
    from mmsnn.analysis.erf import st_erf
    model = _build(name, torch.float32)
    eager = st_erf(model, num_inputs=1, size=(32, 32), output_indices=(0,))
    compiled = st_erf(torch.compile(model, backend='aot_eager'), num_inputs=1, size=(32, 32),
                      output_indices=(0,))
    assert eager.keys() == compiled.keys()
    for key in eager:
        assert torch.equal(compiled[key], eager[key])


# --------------------------------------------------------------------------- inductor, float64
def _neurons(model):
    from mmsnn.models.backbones.spiking_transformer_base import MultiStepLIF
    from mmsnn.models.neurons import BinaryLIF, IntegerLIF, MultiSpikeQuantizer
    kinds = (MultiSpikeQuantizer, IntegerLIF, BinaryLIF, MultiStepLIF)
    return [m for m in model.modules() if isinstance(m, kinds)]


class _WithSpikes(torch.nn.Module):
    """The model's taps and the output of every neuron, in call order."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self._spikes = []
        for m in _neurons(model):
            m.register_forward_hook(lambda mod, args, out: self._spikes.append(out))

    def forward(self, x):
        self._spikes.clear()
        taps = self.model(x)
        return tuple(taps), tuple(self._spikes)


# Meta-SDT (quantiser, then I-LIF) only: the transformers' LIF neurons and attention
# compile to one aot_eager graph that equals eager in float64, forward and backward
# (test_every_family_compiles_one_graph...), and an inductor SDTv1 took 30 s of the suite.
# I-LIF at T = 2: the membrane carried from step to step is the same generated code at any
# T > 1, and T = 4 took twice as long to compile (53 against 24 s on a 2-core AMD EPYC)
@pytest.fixture(scope='module', params=['MetaSDT-srb-early', 'MetaSDT-srb-ILIF-T2'])
def inductor_pair(request):
    """(eager, inductor-compiled) float64 model with spike taps, eval mode."""
    model = _WithSpikes(_build(request.param)).eval()
    torch._dynamo.reset()
    # inductor: the generated C++ kernels are the point, so compiled here, not loaded from
    # inductor's on-disk cache (which once mixed the kernels of two vector widths: see
    # mmsnn.utils.compile.separate_inductor_cache_by_isa)
    with torch._inductor.config.patch(fx_graph_cache=False):
        yield model, torch.compile(model, **compile_kwargs())  # mmsnn's inductor settings
    torch._dynamo.reset()


def test_inductor_float64_spikes_and_outputs_equal_eager(inductor_pair):
    eager, compiled = inductor_pair
    x = _image(4)
    with torch.no_grad():
        taps_e, spikes_e = eager(x)
        taps_c, spikes_c = compiled(x)
    assert len(spikes_c) == len(spikes_e) > 10
    for a, b in zip(spikes_e, spikes_c):
        assert torch.equal(b, a)  # every spike the same
    assert any(s.count_nonzero() for s in spikes_e)
    for a, b in zip(taps_e, taps_c):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)


def test_inductor_float64_train_step_equals_eager():
    """The compiled train step's generated kernels, forward and backward (the quantiser's
    surrogate gradient, BN with batch statistics, the SRB mixer): in float64 the taps and the
    gradients of the input and of every parameter equal eager's (to summation-order
    rounding: inductor's reductions add in another order)."""
    eager = _build('MetaSDT-srb-early').train()
    twin = _build('MetaSDT-srb-early').train()  # the same seeded init, its own BN statistics
    torch._dynamo.reset()
    with torch._inductor.config.patch(fx_graph_cache=False):  # (see inductor_pair)
        compiled = torch.compile(twin, **compile_kwargs())
        x = _image(6)
        taps_e, gx_e, gp_e = _step(eager, x)
        taps_c, gx_c, gp_c = _step(compiled, x)
    torch._dynamo.reset()
    assert len(gp_c) == len(gp_e) > 20
    for a, b in zip(taps_e, taps_c):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
    grads_e, grads_c = [gx_e, *gp_e], [gx_c, *gp_c]
    scale = max(g.abs().max() for g in grads_e)
    # (a conv bias before a train-mode BN has a gradient of 0 up to rounding: measured
    # against the largest gradient, not its own)
    reached = [g.abs().max() > 1e-6 * scale for g in grads_e]
    assert reached[0] and sum(reached) > 0.8 * len(reached)  # surrogate gradients flow
    for a, b in zip(grads_e, grads_c):
        assert (b - a).abs().max() <= 1e-9 * scale
    for m_e, m_c in zip(eager.modules(), twin.modules()):  # the batch statistics it ran on
        if isinstance(m_e, torch.nn.modules.batchnorm._BatchNorm):
            torch.testing.assert_close(m_c.running_mean, m_e.running_mean, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- runner option
def _tiny_train_setup():
    from mmengine.config import ConfigDict
    from mmengine.model import BaseModel
    from mmengine.optim import build_optim_wrapper

    class TinyModel(BaseModel):
        def __init__(self):
            super().__init__()
            self.backbone = MetaSDT(embed_dims=(8, 16, 16, 16), out_indices=(1,), mixer='srb')

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return dict(loss=sum(t.square().mean() for t in self.backbone(inputs)))

    torch.manual_seed(0)
    model = TinyModel()
    # as from a config file: mmengine then builds the param groups as ConfigDicts
    optim_wrapper = build_optim_wrapper(model, ConfigDict(
        optimizer=dict(type='AdamW', lr=1e-3),
        paramwise_cfg=dict(custom_keys={'backbone.downsample1_1': dict(lr_mult=2.0)})))
    return model, optim_wrapper


def test_compile_settings_for_mmsnn_models():
    """``compile=True`` (and ``tools/test.py --compile``) compile with inductor's channels-last
    layout choice off, unless the config says otherwise; other backends get no inductor
    options. torch.compile checks the option names as it wraps (no compilation here)."""
    from mmengine.config import Config
    cfg = add_compile_hooks(Config(dict(compile=True)))
    assert cfg.compile == dict(options=dict(layout_optimization=False))
    assert [h['type'] for h in cfg.custom_hooks] == ['EagerParamUpdateHook']
    torch.compile(torch.nn.Identity(), **cfg.compile)  # option names torch knows
    mine = add_compile_hooks(Config(dict(compile=dict(
        mode='max-autotune-no-cudagraphs', options=dict(layout_optimization=True)))))
    assert mine.compile == dict(mode='max-autotune-no-cudagraphs',
                                options=dict(layout_optimization=True))
    other = add_compile_hooks(Config(dict(compile=dict(backend='aot_eager'))))
    assert other.compile == dict(backend='aot_eager')
    assert add_compile_hooks(Config(dict(compile=False))).get('custom_hooks') is None


def test_compiled_train_step_fails_in_the_optimizer_without_the_hook():
    """The cause of ``compile=True`` failing: dynamo traces the optimizer step of mmengine's
    train_step and cannot handle its ConfigDict param groups (torch 2.13). If this stops
    failing, torch fixed it and :class:`EagerParamUpdateHook` is only a speed choice."""
    model, optim_wrapper = _tiny_train_setup()
    assert type(optim_wrapper.optimizer.param_groups[0]) is not dict
    step = torch.compile(model.train_step, backend='eager')
    with pytest.raises(torch._dynamo.exc.InternalTorchDynamoError, match='items'):
        step(dict(inputs=_image(5, dtype=torch.float32)), optim_wrapper)
    torch._dynamo.reset()


def test_compiled_train_step_with_eager_param_update_trains_without_recompiles():
    from mmsnn.engine.compile import keep_param_update_eager
    model, optim_wrapper = _tiny_train_setup()
    keep_param_update_eager(optim_wrapper)
    counter = CompileCounterWithBackend('aot_eager')
    step = torch.compile(model.train_step, backend=counter)
    before = [p.detach().clone() for p in model.parameters()]
    torch._dynamo.reset()
    for i in range(3):
        for group in optim_wrapper.optimizer.param_groups:  # a schedule changes lr
            group['lr'] = 1e-3 * (i + 1)
        step(dict(inputs=_image(5, dtype=torch.float32)), optim_wrapper)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert counter.frame_count == 1  # data preprocessor + forward + loss: one graph
    torch._dynamo.reset()


def test_train_tool_with_the_runners_compile_option(tmp_path, run_tool):
    """``tools/train.py CONFIG --cfg-options compile=...`` trains and validates: the seg demo
    config (SRB), shrunk to 32x32 crops and taps 0-2, 2 iterations. The runner's option with
    ``backend='aot_eager'``: the failure was dynamo's (tracing the optimizer), whatever the
    backend; with inductor this test takes 7 min on a busy 2-core machine (it passes too,
    and so does the issue's full command, see .notes/compile.md)."""
    from mmsnn.datasets import generate_demo_ade
    root = str(tmp_path / 'demo_ade')
    generate_demo_ade(root, num_train=2, num_val=1, image_size=(32, 32))
    from tool_helpers import tiny_seg_demo_options
    opts = tiny_seg_demo_options(root) + ['compile.backend=aot_eager',
                                          'default_hooks.logger.interval=1']
    res = run_tool('tools/train.py', 'configs/seg/demo/sdt_srb_demo.py', '--work-dir',
                   str(tmp_path / 'work'), '--cfg-options', *opts, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert 'Model has been "compiled"' in res.stdout + res.stderr
    assert osp.isfile(tmp_path / 'work' / 'iter_2.pth')
    assert 'mIoU' in res.stdout + res.stderr  # validation ran after the compiled steps
