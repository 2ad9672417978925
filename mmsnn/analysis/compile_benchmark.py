"""Eager, fast path and ``torch.compile`` side by side: inference and train step, compile time,
peak memory and float64 equality (issue 23.2), driven by ``tools/analysis/benchmark_compile.py``.

A *cell* is one (model, size, mode, route, T, with_cp) measurement; each runs in a fresh
process of its own (the allocator, compiled code, oneDNN primitives and the peak RSS of one
cell never leak into another). The cells run in rounds, alternating, so whatever else the
machine does slows them alike; the medians over rounds are reported, and ratios against the
eager cell of the same model/size/mode/T. Routes:

    eager           the model as built
    fast            ``mmsnn.deploy.convert_for_inference`` (inference only: it refuses .train())
    compiled        ``torch.compile`` (inductor) of the backbone and the neck, in place
                    (``nn.Module.compile``: state-dict keys unchanged); heads stay eager
    compiled+fast   inference only: a detector/segmentor's backbone and neck compiled as
                    built, the fast path's rewrites on its eager heads (``tools/test.py
                    --fuse-conv-bn --compile``); a bare backbone: every rewrite, then
                    compiled (its Winograd convs stay in the graph as the custom op
                    ``mmsnn::nnpack_conv2d``: dynamo cannot trace NNPACK's call itself)

Every cell also reports its first call's extra time (the warm-up call minus a steady one): for
a compiled cell its compile time, tracing and code generation (the table shows the first
round's, with a cold inductor cache; later rounds find the cache warm), for eager ones noise.

Models: ``backbone-s`` / ``backbone-l`` (MetaSDT SRB), ``maskrcnn`` (``configs/det/
sdt_srb_s_coco.py``), ``semfpn`` (``configs/seg/sdt_srb_s_ade20k.py``). Train step =
forward, loss, backward (no optimiser step: it is the same for every route). ``T > 1`` builds
the backbone with I-LIF neurons for T real steps (heads keep their configs' neurons).

Equality (``check_equal``): float64, a small input, each route against eager: every neuron's
spikes must be equal (counted mismatches), outputs (and in train mode every gradient) within
``1e-9`` relative to their largest magnitude.
"""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

#: '-fp32': compiled without the int8 count convs that compile_for_inference installs on an
#: AMX CPU (mmsnn.ops.count_conv), for the side-by-side comparison
ROUTES = ('eager', 'fast', 'compiled', 'compiled+fast', 'compiled-fp32', 'compiled+fast-fp32')
MODES = ('infer', 'train')
#: model -> (config or None for a bare backbone, default size (H, W))
MODELS = {
    'backbone-s': (None, (800, 1216)),
    'backbone-l': (None, (800, 1216)),
    'maskrcnn': ('configs/det/sdt_srb_s_coco.py', (800, 1344)),
    'semfpn': ('configs/seg/sdt_srb_s_ade20k.py', (512, 512)),
}
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def route_applies(route, mode):
    """The fast path is inference only (a fused model refuses .train())."""
    return mode == 'infer' or 'fast' not in route


def cell_name(model, size, mode, route, T=1, with_cp=False, baseline=None, checkout=None,
              keep_freed=False):
    """The cell's name in the table and the record; ``baseline``: the commit of the other
    checkout (``checkout``) a cell ran in (``--baseline``)."""
    return (f'{model} {size[0]}x{size[1]} {mode} {route}'
            + (f' T={T}' if T != 1 else '') + (' with_cp' if with_cp else '')
            + (' keep-freed' if keep_freed else '') + (f' @{baseline}' if baseline else ''))


# ----------------------------------------------------------------------------- building

def build(model_name, T=1, with_cp=False, dtype=None):
    """The model of ``model_name`` (train mode, seeded init), with a T-step I-LIF backbone
    when ``T > 1``."""
    import torch
    torch.manual_seed(0)
    neuron = dict(type='ILIF') if T > 1 else None
    config, _ = MODELS[model_name]
    if config is None:
        from mmsnn.models import MetaSDT
        model = MetaSDT(arch=model_name.split('-')[1], mixer='srb', out_indices=(1, 2, 3, 4),
                        T=T, neuron_cfg=neuron, with_cp=with_cp)
    else:
        from mmengine.config import Config
        from mmengine.registry import init_default_scope

        import mmsnn  # noqa: F401  (registers the models)
        cfg = Config.fromfile(osp.join(REPO, config))
        init_default_scope(cfg.default_scope)
        bb = cfg.model.backbone
        bb.update(T=T, neuron_cfg=neuron, keep_time=T > 1, with_cp=with_cp)
        if with_cp:  # the spiking neck and RPN head hold T steps of activations too
            cfg.model.neck.with_cp = True
            if 'rpn_head' in cfg.model:
                cfg.model.rpn_head.with_cp = True
        if cfg.default_scope == 'mmseg':
            cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)  # no SyncBN
        registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
        model = registry.build(cfg.model)
    if dtype is not None:
        model = model.to(dtype)
    return model.train()


def make_inputs(model_name, model, size, dtype=None):
    """(step input for the model): a tensor for a backbone, else (inputs, data_samples) after
    the model's data preprocessor."""
    import torch
    g = torch.Generator().manual_seed(1)
    if MODELS[model_name][0] is None:
        return torch.randn(1, 3, *size, generator=g, dtype=dtype or torch.float32)
    if model_name == 'maskrcnn':
        from mmdet.testing import demo_mm_inputs
        torch.manual_seed(1)
        data = demo_mm_inputs(1, [(3, *size)], num_items=[3], num_classes=3, with_mask=True)
    else:
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, *size), generator=g))
        s.set_metainfo(dict(img_shape=size, ori_shape=size, pad_shape=size))
        data = dict(inputs=[torch.randint(0, 255, (3, *size), dtype=torch.uint8, generator=g)],
                    data_samples=[s])
    data = model.data_preprocessor(data, True)
    inputs = data['inputs'] if dtype is None else data['inputs'].to(dtype)
    return inputs, data['data_samples']


def apply_route(model, route, mode='infer'):
    """``model`` turned into ``route`` (in place), as the tools do it: ``tools/test.py
    --fuse-conv-bn`` / ``--compile`` for inference (:func:`~mmsnn.deploy.convert_for_inference`,
    :func:`~mmsnn.engine.compile.compile_for_inference`), ``nn.Module.compile`` of backbone
    and neck for a train step. A bare backbone is compiled whole."""
    from mmsnn.engine.compile import compiled_parts
    parts = compiled_parts(model)  # what tools/test.py --compile compiles; none: a backbone
    if 'fast' in route:
        from mmsnn.deploy import convert_for_inference
        if 'compiled' in route and parts:
            # the compiled parts as they are, the hand-written rewrites on the eager heads
            convert_for_inference(model, leave=tuple(parts))
        else:
            # a bare backbone: all rewrites, then compiled (the Winograd convs stay in the
            # graph as one op each, mmsnn::nnpack_conv2d)
            convert_for_inference(model)
    if 'compiled' in route:
        if mode == 'infer':
            from mmsnn.engine.compile import compile_for_inference
            compile_for_inference(model, count_convs=False if route.endswith('-fp32') else None)
        else:  # as compile=True in a training run (mmsnn's inductor settings)
            from mmsnn.engine.compile import compile_kwargs
            for part in [getattr(model, name) for name in parts] or [model]:
                part.compile(**compile_kwargs())  # in place: state-dict keys unchanged
    return model


def step_fn(model_name, model, mode, batch):
    """A zero-argument function running one inference call or one train step."""
    import torch
    backbone_only = MODELS[model_name][0] is None

    def outputs():
        if backbone_only:
            return list(model(batch))
        inputs, samples = batch
        if mode == 'infer':
            res = model.predict(inputs, samples)
            return [r.pred_sem_seg.data if hasattr(r, 'pred_sem_seg') else r.pred_instances.bboxes
                    for r in res]
        losses = model.loss(inputs, samples)
        return [sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items()
                    if 'loss' in k)]

    if mode == 'infer':
        model.eval()

        def infer():
            with torch.no_grad():
                return outputs()
        return infer

    model.train()

    def train():
        outs = outputs()
        loss = sum(o.float().mean() for o in outs)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return outs
    return train


# ----------------------------------------------------------------------------- one cell

def measure_cell(model_name, size, mode, route, T=1, with_cp=False, calls=2, profile=False,
                 keep_freed=False):
    """In this (fresh) process: build, warm up (= compile), time ``calls`` calls. Returns
    dict(time_s: median call, first_s: the warm-up call, compile_s, peak_mib of the warm-up
    call above the RSS after building, profile: top ops' table or None). The timed calls run
    with glibc's allocator as in a user's run (``peak_of_first_step``), or with
    ``keep_freed``, as in ``tools/train.py`` / ``tools/test.py --keep-freed-memory``
    (:func:`mmsnn.deploy.keep_freed_memory`, then one more untimed call to grow the heap)."""
    import torch

    from mmsnn.analysis.benchmark.processes import peak_of_first_step
    model = build(model_name, T, with_cp)
    batch = make_inputs(model_name, model, size)
    apply_route(model, route, mode)
    fn = step_fn(model_name, model, mode, batch)
    t0 = time.perf_counter()
    # the first call compiles; its peak is the cell's (glibc's mmap threshold fixed for it)
    peak = peak_of_first_step(fn, torch.device('cpu'))
    first = time.perf_counter() - t0
    if keep_freed:
        from mmsnn.deploy import keep_freed_memory
        keep_freed_memory()
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    table = None
    if profile:
        from torch.profiler import profile as torch_profile
        with torch_profile() as prof:
            fn()
        table = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15)
    steady = statistics.median(times)
    return dict(time_s=steady, first_s=first, compile_s=max(first - steady, 0.0),
                peak_mib=peak, threads=torch.get_num_threads(), profile=table)


# ----------------------------------------------------------------------------- equality

def _neurons(model):
    from mmsnn.models.neurons import MultiSpikeQuantizer, _MultiStepNeuron
    return [m for m in model.modules() if isinstance(m, (MultiSpikeQuantizer, _MultiStepNeuron))]


def _train_with_grads(model_name, model, batch):
    import torch
    if MODELS[model_name][0] is None:
        outs = list(model(batch))
    else:
        inputs, samples = batch
        losses = model.loss(inputs, samples)
        outs = [sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items()
                    if 'loss' in k)]
    # a fixed, non-uniform weighting: every output element's gradient path is exercised
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)).sum()
               for o in outs)
    loss.backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads


def _rel_err(a, b):
    scale = max(a.abs().max().item(), 1e-300)
    return (a - b).abs().max().item() / scale


def check_equal(model_name, size, mode, route, T=1):
    """float64: ``route`` against eager on one step. Returns dict(spikes, spike_mismatch,
    output_err, grad_err) (relative errors; spike_mismatch counts differing elements).
    Spikes are compared where the route records them (a compiled model's hooks run inside the
    compiled graph; a fused model's neurons are the same modules)."""
    import torch
    torch.manual_seed(0)
    eager = build(model_name, T, dtype=torch.float64)
    other = build(model_name, T, dtype=torch.float64)
    other.load_state_dict(eager.state_dict())
    batch = make_inputs(model_name, eager, size, dtype=torch.float64)
    apply_route(other, route, mode)
    if mode == 'infer':
        eager.eval()
        other.eval()
        with torch.no_grad():
            a, s_a = _infer_recording(model_name, eager, batch)
            b, s_b = _infer_recording(model_name, other, batch)
        ga, gb = [], []
    else:
        (a, ga), s_a = _recording(lambda: _train_with_grads(model_name, eager, batch), eager)
        (b, gb), s_b = _recording(lambda: _train_with_grads(model_name, other, batch), other)
    mismatch = (sum(int((x != y).sum()) for x, y in zip(s_a, s_b))
                if len(s_a) == len(s_b) and all(x.shape == y.shape for x, y in zip(s_a, s_b))
                else None)
    return dict(spikes=len(s_a), spikes_compared=len(s_b), spike_mismatch=mismatch,
                output_err=max((_rel_err(x, y) for x, y in zip(a, b)), default=0.0),
                grad_err=max((_rel_err(x, y) for x, y in zip(ga, gb)), default=0.0))


def _recording(fn, model):
    spikes = []
    hooks = [m.register_forward_hook(lambda mod, args, out: spikes.append(out.detach().clone()))
             for m in _neurons(model)]
    try:
        return fn(), spikes
    finally:
        for h in hooks:
            h.remove()


def _infer_recording(model_name, model, batch):
    res, spikes = _recording(step_fn(model_name, model, 'infer', batch), model)
    return [r.detach().double() for r in res], spikes


# ----------------------------------------------------------------------------- driver

def child_command(cell, calls, profile=False, python=sys.executable):
    """The command line of one measuring process (``benchmark_compile.py --cell``): this
    checkout's script, or that of the other checkout the cell names (``checkout``, with
    ``--baseline``; the same interpreter and packages, that checkout's mmsnn)."""
    cell = dict(cell)
    repo = cell.pop('checkout', None) or REPO
    cell.pop('baseline', None)
    return [python, osp.join(repo, 'tools/analysis/benchmark_compile.py'), '--cell',
            json.dumps(dict(cell, calls=calls, profile=profile))]


def run_cell(cell, calls, profile=False, env=None):
    """One cell in a fresh process; its JSON result (or dict(error=...) when it failed)."""
    out = subprocess.run(child_command(cell, calls, profile), capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})))
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{')]
    if out.returncode or not lines:
        tail = (out.stderr.strip().splitlines() or ['no output'])[-1]
        return dict(error=f'exit {out.returncode}: {tail[:300]}')
    return json.loads(lines[-1])


def run_rounds(cells, rounds, calls, log=print):
    """Every cell once per round, alternating; returns {name: dict(times, compile_cold,
    compile, peak_mib, error)} with medians."""
    results = {cell_name(**c): dict(cell=c, time_s=[], compile_s=[], peak_mib=[], first=None,
                                    error=None) for c in cells}
    for r in range(rounds):
        for c in cells:
            name = cell_name(**c)
            if results[name]['error']:
                continue
            res = run_cell(c, calls)
            if 'error' in res:
                results[name]['error'] = res['error']
                log(f'round {r + 1}: {name}: FAILED {res["error"]}')
                continue
            rec = results[name]
            rec['time_s'].append(res['time_s'])
            rec['compile_s'].append(res['compile_s'])
            rec['peak_mib'].append(res['peak_mib'])
            if rec['first'] is None:
                rec['first'] = res['compile_s']
            log(f'round {r + 1}: {name}: {res["time_s"]:.3f} s (first call +'
                f'{res["compile_s"]:.1f} s, peak {res["peak_mib"]:.0f} MiB)')
    summary = {}
    for name, rec in results.items():
        if rec['error'] or not rec['time_s']:
            summary[name] = dict(cell=rec['cell'], error=rec['error'] or 'no result')
            continue
        summary[name] = dict(cell=rec['cell'], time_s=statistics.median(rec['time_s']),
                             compile_cold_s=rec['first'],
                             compile_s=statistics.median(rec['compile_s']),
                             peak_mib=statistics.median(rec['peak_mib']),
                             rounds=len(rec['time_s']))
    return summary


def eager_of(name, summary):
    """The eager cell of the same model, size, mode and T, in the same checkout."""
    c = summary[name]['cell']
    return summary.get(cell_name(c['model'], c['size'], c['mode'], 'eager', c.get('T', 1),
                                 False, c.get('baseline')))  # the default allocator's


def format_table(summary, cpu):
    lines = [f'CPU: {cpu}',
             f'{"cell":<52} {"time s":>8} {"x eager":>8} {"1st call +s":>11} {"peak MiB":>9}']
    for name, rec in summary.items():
        if 'error' in rec:
            lines.append(f'{name:<52} FAILED: {rec["error"]}')
            continue
        base = eager_of(name, summary)
        # '-' where the run has no eager cell with the default allocator to compare with
        # (e.g. --keep-freed-memory on)
        speed = f'{base["time_s"] / rec["time_s"]:8.2f}' if base and 'time_s' in base else '-'
        lines.append(f'{name:<52} {rec["time_s"]:8.3f} {speed:>8} '
                     f'{rec["compile_cold_s"]:11.1f} {rec["peak_mib"]:9.0f}')
    return '\n'.join(lines)


def figures(summary):
    """The record's figures (costs: seconds, MiB) of every measured cell."""
    out = {}
    for name, rec in summary.items():
        if 'error' not in rec:
            out[f'{name} time_s'] = rec['time_s']
            out[f'{name} peak_mib'] = rec['peak_mib']
    return out


__all__ = ['ROUTES', 'MODES', 'MODELS', 'route_applies', 'cell_name', 'build', 'make_inputs',
           'apply_route', 'step_fn', 'measure_cell', 'check_equal', 'run_cell', 'run_rounds',
           'format_table', 'figures']
