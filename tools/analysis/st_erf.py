"""Spatial / spatio-temporal ERF of mmsnn backbones, several models side by side.

Examples::

    # fresh (random-init) backbones of det/seg configs, or trained ones with --checkpoint
    python tools/analysis/st_erf.py configs/det/a.py configs/det/b.py \
        --checkpoint work_dirs/a/epoch_12.pth work_dirs/b/epoch_12.pth --out-dir erf_out

    # bare backbones, no config needed: conv vs MLPixer vs SRB
    python tools/analysis/st_erf.py --arch s --mixers conv mlpixer srb --size 128 128
    python tools/analysis/st_erf.py --backbone "dict(type='MetaSDT', arch='t', mixer='srb')"

    # multi-step (real LIF neurons, T=4): adds the ST-ERF delay grid and the temporal ERF
    python tools/analysis/st_erf.py --arch t --mixers conv srb --T 4 --neuron LIF

    # any mix of mmsnn backbones and stock ANN backbones, matched stage stride, one figure
    python tools/analysis/st_erf.py --models spikformer sdt_v1 qkformer metasdt-conv \
        swin-t pvtv2-b0 --size 224 --strides 8 16
    python tools/analysis/st_erf.py --models qkformer "dict(type='QKFormer', arch=None, \
        embed_dims=64, depth=4, num_heads=2)" --encoding per-step --delays --strides 16

    # speed of the one-forward ERF engine vs one forward per layer per sample
    python tools/analysis/st_erf.py --benchmark

``--models`` (presets: ``MODEL_PRESETS``, or literal backbone dicts; ``mmdet.``/``mmseg.``
type prefixes reach the toolboxes' own backbones): every model sees the same inputs, and the
columns are stage strides (each model's deepest tap with that stride, measured by a forward
pass) or, with ``--delays``, the ST-ERF delays of one stride. Writes ``models.png`` and
``models_table.md`` (coverage, area ratios) and prints the table.

Writes, under --out-dir: ``compare.png`` (rows: models, columns: taps, shared colour scale
per tap), ``compare_st_erf.png`` / ``compare_temporal.png`` for multi-step models,
``summary.json`` and one folder per model with its ``.npy`` maps, PNGs and ``metrics.json``;
prints a table of area ratios, coverage and Gaussian width.
"""
import argparse
import ast
import json
import os
import os.path as osp
import sys
import time

from mmsnn.utils.errors import MMSNNUserError, run_tool


#: ``--models`` presets: name -> backbone dict, built in the mmdet scope (an ``mmdet.`` /
#: ``mmseg.`` type prefix picks that toolbox's registry). mmsnn backbones expose all five
#: taps so that any stride can be matched; the sizes are the published ones (Meta-SDT: the
#: smallest, 't').
MODEL_PRESETS = {
    'spikformer': dict(type='Spikformer', arch='8-512', out_indices=(0, 1, 2, 3, 4)),
    'sdt_v1': dict(type='SDTv1', arch='8-384', out_indices=(0, 1, 2, 3, 4)),
    'qkformer': dict(type='QKFormer', arch='10-384', out_indices=(0, 1, 2, 3, 4)),
    'metasdt-conv': dict(type='MetaSDT', arch='t', mixer='conv', out_indices=(0, 1, 2, 3, 4)),
    'metasdt-mlpixer': dict(type='MetaSDT', arch='t', mixer='mlpixer',
                            out_indices=(0, 1, 2, 3, 4)),
    'metasdt-srb': dict(type='MetaSDT', arch='t', mixer='srb', out_indices=(0, 1, 2, 3, 4)),
    'swin-t': dict(type='mmdet.SwinTransformer'),
    'pvtv2-b0': dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=32,
                     num_layers=[2, 2, 2, 2]),
}


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='ERF / ST-ERF analysis of mmsnn backbones (det/seg configs or bare '
                    'backbones), several models compared side by side.')
    p.add_argument('configs', nargs='*', help='mmdet / mmseg config files')
    p.add_argument('--checkpoint', nargs='+', default=None,
                   help='one checkpoint per config (same order; "none" for random init), '
                        'or one for a single config')
    p.add_argument('--backbone', action='append', default=[],
                   help="bare backbone spec, e.g. \"dict(type='MetaSDT', arch='s', "
                        "mixer='srb')\" (repeatable)")
    p.add_argument('--arch', default=None, help='MetaSDT size for --mixers (t, s, m, l, ...)')
    p.add_argument('--embed-dims', type=int, nargs=4, default=None,
                   help='MetaSDT embed dims C0..C3 for --mixers (overrides --arch)')
    p.add_argument('--mixers', nargs='+', default=None, choices=['conv', 'mlpixer', 'srb'],
                   help='one bare MetaSDT per mixer')
    p.add_argument('--T', type=int, default=None, help='time steps of bare backbones')
    p.add_argument('--neuron', default=None, choices=['MultiSpike', 'ILIF', 'LIF'],
                   help='neuron of bare backbones (ILIF/LIF: real multi-step SNN)')
    p.add_argument('--models', nargs='+', default=None, metavar='MODEL',
                   help='compare any mix of backbones at matched strides: preset names '
                        f'({", ".join(MODEL_PRESETS)}) or literal backbone dicts, e.g. '
                        "\"dict(type='mmdet.SwinTransformer')\"")
    p.add_argument('--model-checkpoints', nargs='+', default=None, metavar='CKPT',
                   help='one checkpoint per --models entry ("none": random init)')
    p.add_argument('--strides', type=int, nargs='+', default=[8, 16],
                   help='--models: stage strides to compare (one column each)')
    p.add_argument('--delays', action='store_true',
                   help='--models: columns are the ST-ERF delays tau = 0..T-1 of the last '
                        '--strides entry (needs --encoding per-step)')
    p.add_argument('--encoding', default='direct', choices=['direct', 'per-step'],
                   help='--models, multi-step SNNs: the same noise frame at every step '
                        '(direct, as the reference ERF script) or one frame per step '
                        '(per-step: also gives the ST-ERF delays)')
    p.add_argument('--calibrate-bn', type=int, default=0, metavar='N',
                   help='--models: before probing, set every BatchNorm\'s running statistics '
                        'to those of its input over N noise images (other noise than the '
                        'probes). At random init the eval-mode BNs have unit statistics and '
                        'the LIF SNNs fall silent after their first layer; calibrated, each '
                        'layer sees normalised inputs (as the reference goldens\' weights)')
    p.add_argument('--objective', default='relu', choices=['relu', 'sum'],
                   help='--models: the probed unit is the centre of relu(tap) summed over '
                        "channels (relu: RepLKNet's ERF script; at random init the plain sum "
                        "of a LayerNorm-ed ANN tap is identically 0) or of the tap itself")
    p.add_argument('--labels', nargs='+', default=None, help='names of the models in figures')
    p.add_argument('--taps', type=int, nargs='+', default=None,
                   help='stage taps to probe (default: the backbone out_indices)')
    p.add_argument('--num-inputs', type=int, default=8, help='N(0,1) noise inputs (runs)')
    p.add_argument('--size', type=int, nargs='+', default=[224, 224], metavar=('H', 'W'),
                   help='input size H W (or one number for a square)')
    p.add_argument('--batch-size', type=int, default=4, help='inputs per forward pass')
    p.add_argument('--grad', default='abs', choices=['abs', 'relu'])
    p.add_argument('--reduce', default='mean', choices=['mean', 'sum'])
    p.add_argument('--normalize', default=None, choices=['global', 'row', 'col', 'map'],
                   help='which maps of the comparison figure share a colour scale (default: '
                        "col; with --models: map, or row with --delays, since ANN and SNN "
                        'gradients differ by orders of magnitude)')
    p.add_argument('--batched-grads', action='store_true',
                   help='all targets in one vmapped backward (faster, more memory)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out-dir', default='work_dirs/st_erf')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   metavar='KEY=VALUE', help='override config settings (every config)')
    p.add_argument('--benchmark', action='store_true',
                   help='time the one-forward ERF engine against one forward per layer '
                        'per sample, side by side, and exit')
    args = p.parse_args(argv)
    if args.normalize is None:
        args.normalize = ('row' if args.delays else 'map') if args.models else 'col'
    if len(args.size) == 1:
        args.size = args.size * 2
    if len(args.size) != 2:
        p.error('--size takes H W (or one number)')
    return args


# ---------------------------------------------------------------------------- model specs
def parse_backbone_spec(text):
    """``"dict(type='MetaSDT', arch='s')"`` or ``"{'type': 'MetaSDT'}"`` -> dict, without
    evaluating code (only literals are accepted)."""
    try:
        node = ast.parse(text.strip(), mode='eval').body
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict' \
                and not node.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        value = ast.literal_eval(node)
        if isinstance(value, dict):
            return value
    except (SyntaxError, ValueError) as e:
        raise MMSNNUserError(f'--backbone {text!r} is not a dict of literals ({e}); write e.g. '
                       "\"dict(type='MetaSDT', arch='s', mixer='srb')\"") from None
    raise MMSNNUserError(f'--backbone {text!r} is not a dict; write e.g. '
                   "\"dict(type='MetaSDT', arch='s', mixer='srb')\"")


def model_specs(args):
    """[(label, kind, payload)] with kind 'config' (path, checkpoint) or 'backbone' (dict)."""
    specs = []
    ckpts = args.checkpoint or []
    if ckpts and not args.configs:
        raise MMSNNUserError('--checkpoint needs config files: pass CONFIG [CONFIG ...] before it '
                       '(bare backbones take no checkpoint)')
    if ckpts and len(ckpts) != len(args.configs):
        raise MMSNNUserError(f'got {len(args.configs)} config(s) but {len(ckpts)} checkpoint(s); '
                       'give one checkpoint per config, in the same order ("none" for a '
                       'random init)')
    for i, cfg in enumerate(args.configs):
        if not osp.isfile(cfg):
            raise MMSNNUserError(f'config file {cfg!r} does not exist; pass the path of an mmdet / '
                           'mmseg config (e.g. configs/det/...py), or use --arch/--mixers or '
                           '--backbone for a bare backbone')
        ckpt = ckpts[i] if ckpts else None
        if ckpt is not None and ckpt.lower() in ('none', '-', ''):
            ckpt = None
        if ckpt is not None and not osp.isfile(ckpt):
            raise MMSNNUserError(f'checkpoint {ckpt!r} (for {cfg}) does not exist; check the path, '
                           'or pass "none" to use a randomly initialised model')
        specs.append((osp.splitext(osp.basename(cfg))[0], 'config', (cfg, ckpt)))
    bare = dict()
    if args.T is not None:
        bare['T'] = args.T
    if args.neuron is not None:
        bare['neuron_cfg'] = dict(type=args.neuron)
    for text in args.backbone:
        spec = parse_backbone_spec(text)
        spec.setdefault('type', 'MetaSDT')
        for k, v in bare.items():
            spec.setdefault(k, v)
        label = spec.get('mixer', spec['type']) if len(args.backbone) > 1 else spec['type']
        specs.append((label, 'backbone', spec))
    if args.mixers or args.arch or args.embed_dims:
        for mixer in args.mixers or ['conv']:
            spec = dict(type='MetaSDT', mixer=mixer, **bare)
            if args.embed_dims:
                spec['embed_dims'] = tuple(args.embed_dims)
            else:
                spec['arch'] = args.arch or 's'
            specs.append((mixer, 'backbone', spec))
    if not specs:
        raise MMSNNUserError('nothing to analyse: pass config file(s), --backbone SPEC, or '
                       '--arch/--mixers (e.g. --arch s --mixers conv mlpixer srb)')
    if args.labels:
        if len(args.labels) != len(specs):
            raise MMSNNUserError(f'--labels has {len(args.labels)} names for {len(specs)} models')
        specs = [(lab, k, p) for lab, (_, k, p) in zip(args.labels, specs)]
    seen = {}
    unique = []
    for label, k, p in specs:  # make labels unique (used as folder names)
        n = seen.get(label, 0)
        seen[label] = n + 1
        unique.append((f'{label}_{n}' if n else label, k, p))
    return unique


def build_from_config(path, ckpt, cfg_options, taps):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsnn  # noqa: F401  (registers mmsnn modules)
    from mmsnn.models import CheckpointMismatchError, load_pretrained
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # noqa: BLE001 - config syntax / import errors
        raise MMSNNUserError(f'could not read config {path!r}: {type(e).__name__}: '
                       f'{str(e).splitlines()[0] if str(e) else ""}') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    if 'model' not in cfg:
        raise MMSNNUserError(f'config {path!r} has no `model`; pass a det/seg model config')
    try:
        model = MODELS.build(cfg.model)
    except KeyError as e:
        raise MMSNNUserError(f'could not build the model of {path!r}: {e}. Is the type registered '
                       "(custom_imports=dict(imports=['mmsnn']))?") from None
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        raise MMSNNUserError(f'the model of {path!r} ({type(model).__name__}) has no backbone')
    note = 'random init'
    if ckpt is not None:
        try:
            missing, unexpected = load_pretrained(backbone, ckpt)
        except (CheckpointMismatchError, RuntimeError, FileNotFoundError) as e:
            raise MMSNNUserError(f'checkpoint {ckpt!r} does not fit the backbone of {path!r}: '
                           f'{str(e).splitlines()[0]}') from None
        note = f'checkpoint {osp.basename(ckpt)}'
        if missing:
            note += f' ({len(missing)} backbone keys missing!)'
    _check_taps(backbone, taps, path)
    return backbone, note


def build_bare(spec, taps):
    from mmengine.registry import init_default_scope

    import mmsnn  # noqa: F401
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    spec = dict(spec)
    if taps is not None and spec.get('type') == 'MetaSDT':
        spec.setdefault('out_indices', tuple(taps))
    try:
        backbone = MODELS.build(spec)
    except (KeyError, ValueError, TypeError) as e:
        raise MMSNNUserError(f'could not build backbone {spec}: {e}') from None
    return backbone, 'random init'


def _check_taps(backbone, taps, where):
    from mmsnn.analysis import backbone_tap_targets
    try:
        backbone_tap_targets(backbone, taps)
    except ValueError as e:
        raise MMSNNUserError(f'{where}: {e}') from None


# ---------------------------------------------------------------------------- analysis
def fmt(v, spec='.4f'):
    return '   nan' if v is None or v != v else format(v, spec)


def print_table(rows, thresholds):
    head = ['model', 'tap'] + [f'A@{t:g}' for t in thresholds] + ['coverage', 'sigma px',
                                                                   'temp.share']
    lines = [head]
    for label, tap, m in rows:
        lines.append([label, tap] + [fmt(m.get(f'area@{t:g}')) for t in thresholds]
                     + [fmt(m['coverage'], '.3f'), fmt(m['sigma'], '.1f'),
                        fmt(m.get('temporal_share'), '.3f') if 'temporal_share' in m else '-'])
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(head))]
    out = []
    for k, r in enumerate(lines):
        out.append('  '.join(str(c).rjust(w) if i > 1 else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            out.append('-' * len(out[0]))
    print('\n'.join(out))


def run_analysis(args):
    import torch
    from mmengine.utils import ProgressBar

    from mmsnn.analysis import DEFAULT_THRESHOLDS, analyze_backbone, is_multi_step
    from mmsnn.analysis import make_noise_inputs
    from mmsnn.analysis.plots import (plot_erf_grid, plot_st_erf, plot_temporal_erf,
                                      save_erf_report)
    cfg_options = args.cfg_options
    specs = model_specs(args)
    torch.manual_seed(args.seed)
    models = []
    for label, kind, payload in specs:
        if kind == 'config':
            backbone, note = build_from_config(*payload, cfg_options, args.taps)
        else:
            backbone, note = build_bare(payload, args.taps)
        models.append((label, backbone.to(args.device), note))
    chunks = -(-args.num_inputs // args.batch_size)
    print(f'ERF of {len(models)} model(s), {args.num_inputs} N(0,1) inputs of '
          f'{args.size[0]}x{args.size[1]}, grad={args.grad}, reduce={args.reduce}')
    bar = ProgressBar(len(models) * chunks, file=sys.stdout)  # the current stdout
    summaries = {}
    for label, backbone, note in models:
        p = next(backbone.parameters())
        T = int(backbone.T) if is_multi_step(backbone) else None
        x = make_noise_inputs(args.num_inputs, tuple(args.size), time_steps=T, seed=args.seed,
                              dtype=p.dtype, device=p.device)
        s = analyze_backbone(backbone, x, args.taps, grad=args.grad, reduce=args.reduce,
                             batch_size=args.batch_size, progress=bar.update,
                             batched_grads=args.batched_grads)
        s['note'] = note
        summaries[label] = s
    print()
    os.makedirs(args.out_dir, exist_ok=True)
    rows, record = [], {}
    for label, s in summaries.items():
        save_erf_report(s, osp.join(args.out_dir, label), title=label,
                        extra=dict(model=label, note=s['note']))
        record[label] = dict(note=s['note'], T=s['T'],
                             taps={n: e['metrics'] for n, e in s['taps'].items()})
        rows += [(label, n, e['metrics']) for n, e in s['taps'].items()]
    # comparison: rows = models, columns = taps
    tap_names = sorted({n for s in summaries.values() for n in s['taps']},
                       key=lambda n: (len(n), n))  # tap0 < tap1 < ... < tap10
    grid = [[s['taps'][n]['spatial'][-1] if n in s['taps'] else None for n in tap_names]
            for s in summaries.values()]
    notes = [[(f"cov {s['taps'][n]['metrics']['coverage']:.2f}\n"
               f"A@0.5 {s['taps'][n]['metrics']['area@0.5']:.3f}")
              if n in s['taps'] and 'area@0.5' in s['taps'][n]['metrics'] else ''
              for n in tap_names] for s in summaries.values()]
    figs = [plot_erf_grid(grid, osp.join(args.out_dir, 'compare.png'),
                          row_labels=list(summaries), col_labels=tap_names,
                          normalize=args.normalize, annotate=notes,
                          title=f'spatial ERF, input {args.size[0]}x{args.size[1]}, '
                                f'N={args.num_inputs}')]
    multi = {lab: s for lab, s in summaries.items() if s['multi_step']}
    if multi:
        delays = {f'{lab} {n}': e['delays'] for lab, s in multi.items()
                  for n, e in s['taps'].items() if e['delays'] is not None}
        figs.append(plot_st_erf(delays, osp.join(args.out_dir, 'compare_st_erf.png')))
        last = {lab: s['taps'][list(s['taps'])[-1]]['temporal'] for lab, s in multi.items()}
        figs.append(plot_temporal_erf(last, osp.join(args.out_dir, 'compare_temporal.png'),
                                      title=f'temporal ERF ({tap_names[-1]})'))
    with open(osp.join(args.out_dir, 'summary.json'), 'w') as f:
        from mmsnn.analysis.plots import _json_safe
        json.dump(_json_safe(record), f, indent=2)
    print_table(rows, DEFAULT_THRESHOLDS)
    for label, _, note in models:
        print(f'  {label}: {note}')
    print('figures: ' + ', '.join(figs))
    return summaries


# ---------------------------------------------------------------------------- --models
def comparison_specs(args):
    """[(label, backbone dict, checkpoint or None)] of ``--models``, checked before any work."""
    if args.configs or args.backbone or args.mixers or args.arch or args.embed_dims:
        raise MMSNNUserError('--models compares its own list: do not combine it with config files, '
                       '--backbone, --arch or --mixers (put those models in --models)')
    if args.taps:
        raise MMSNNUserError('--models matches taps by stride: use --strides instead of --taps')
    ckpts = args.model_checkpoints or []
    if ckpts and len(ckpts) != len(args.models):
        raise MMSNNUserError(f'got {len(args.models)} model(s) but {len(ckpts)} checkpoint(s); give '
                       'one per --models entry, in the same order ("none" for random init)')
    if args.delays and args.encoding != 'per-step':
        raise MMSNNUserError('--delays needs one input frame per time step: add --encoding per-step')
    specs = []
    for i, text in enumerate(args.models):
        if text in MODEL_PRESETS:
            label, spec = text, dict(MODEL_PRESETS[text])
        elif text.lstrip().startswith(('dict(', '{')):
            spec = parse_backbone_spec(text)
            if 'type' not in spec:
                raise MMSNNUserError(f'--models {text!r} has no type')
            label = str(spec['type']).split('.')[-1]
        else:
            raise MMSNNUserError(f'--models: unknown model {text!r}; use a preset '
                           f'({", ".join(MODEL_PRESETS)}) or a backbone dict such as '
                           "\"dict(type='mmdet.SwinTransformer')\"")
        if args.T is not None and spec.get('type') in ('Spikformer', 'SDTv1', 'QKFormer'):
            spec.setdefault('T', args.T)
        ckpt = ckpts[i] if ckpts else None
        if ckpt is not None and ckpt.lower() in ('none', '-', ''):
            ckpt = None
        if ckpt is not None and not osp.isfile(ckpt):
            raise MMSNNUserError(f'checkpoint {ckpt!r} (for {text}) does not exist; check the path, '
                           'or pass "none" for a randomly initialised model')
        specs.append((label, spec, ckpt))
    if args.labels:
        if len(args.labels) != len(specs):
            raise MMSNNUserError(f'--labels has {len(args.labels)} names for {len(specs)} models')
        specs = [(lab, sp, ck) for lab, (_, sp, ck) in zip(args.labels, specs)]
    seen, unique = {}, []
    for label, spec, ckpt in specs:
        n = seen.get(label, 0)
        seen[label] = n + 1
        unique.append((f'{label}_{n}' if n else label, spec, ckpt))
    return unique


def build_any_backbone(spec, ckpt):
    """A backbone from the mmdet-scope registry (random init as the toolbox does it, or
    ``ckpt`` through mmsnn's converter); returns ``(backbone, note)``."""
    from mmengine.registry import init_default_scope

    import mmsnn  # noqa: F401
    from mmdet.registry import MODELS
    from mmsnn.models import CheckpointMismatchError, load_pretrained
    init_default_scope('mmdet')
    try:
        backbone = MODELS.build(dict(spec))
    except (KeyError, ValueError, TypeError, AssertionError) as e:
        raise MMSNNUserError(f'could not build backbone {spec}: {e}') from None
    if hasattr(backbone, 'init_weights'):  # the toolbox's own random init
        from mmengine.logging import MMLogger
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel('WARNING')  # not one INFO line per parameter
        try:
            backbone.init_weights()
        finally:
            logger.setLevel(level)
    if ckpt is None:
        return backbone, 'random init'
    try:
        missing, _ = load_pretrained(backbone, ckpt)
    except (CheckpointMismatchError, RuntimeError) as e:
        raise MMSNNUserError(f'checkpoint {ckpt!r} does not fit {spec["type"]}: '
                       f'{str(e).splitlines()[0]}') from None
    note = f'checkpoint {osp.basename(ckpt)}'
    return backbone, note + (f' ({len(missing)} keys missing!)' if missing else '')


def relu_taps(backbone):
    """The backbone with ``relu`` on every returned tap: the ERF engine's objective (the
    centre summed over channels) becomes RepLKNet's ``relu(y_centre).sum()``. Spike taps
    (non-negative) are unchanged, gradients included; a LayerNorm-ed ANN tap at random init, whose channel sum
    is identically 0, gets a meaningful ERF."""
    import inspect

    import torch

    class ReluTaps(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = backbone
            for attr in ('T', 'stateful', 'out_indices'):  # read by the ERF engine
                if hasattr(backbone, attr):
                    setattr(self, attr, getattr(backbone, attr))
            self._keep_time = 'keep_time' in inspect.signature(backbone.forward).parameters

        def forward(self, x, keep_time=None):
            outs = (self.backbone(x, keep_time=keep_time) if self._keep_time and keep_time
                    else self.backbone(x))
            # clamp, not F.relu: its gradient is 1 at 0, so a silent spike (0) keeps the
            # surrogate gradient and spike taps are left exactly as they are
            return tuple(o.clamp(min=0) for o in ((outs,) if torch.is_tensor(outs) else outs))

    return ReluTaps()


def calibrate_batchnorm(backbone, inputs, batch_size):
    """Set each BatchNorm's running mean/var to the statistics of the inputs it receives
    while ``inputs`` pass through the backbone (train-mode forward passes, cumulative
    average). Returns the number of BatchNorm layers (0: nothing to calibrate)."""
    import torch
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    flags = [(m, m.training) for m in backbone.modules()]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every chunk counts the same
    backbone.train()
    try:
        with torch.no_grad():
            for b0 in range(0, inputs.shape[0], batch_size):
                backbone(inputs[b0:b0 + batch_size])
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        for m, flag in flags:
            m.training = flag
    return len(bns)


def tap_strides(backbone, size):
    """``[(tap, stride)]`` of the backbone's outputs, measured by one forward pass (tap = the
    backbone's ``out_indices`` entry, or the output position)."""
    import torch
    p = next(backbone.parameters())
    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.zeros(1, 3, *size, dtype=p.dtype, device=p.device))
    if torch.is_tensor(outs):
        outs = (outs,)
    indices = list(getattr(backbone, 'out_indices', range(len(outs))))
    out = []
    for k, y in zip(indices, outs):
        h = y.shape[-2]
        out.append((int(k), int(round(size[0] / h))))
    return out


def match_strides(label, strides_of_taps, wanted):
    """``{stride: tap}``: for each wanted stride the deepest tap that has it."""
    taps = {}
    for s in wanted:
        found = [k for k, st in strides_of_taps if st == s]
        if not found:
            have = sorted({st for _, st in strides_of_taps})
            raise MMSNNUserError(f'{label} has no stage tap with stride {s} (its strides: {have}); '
                           'pick --strides among the strides every model has')
        taps[s] = found[-1]
    return taps


def markdown_table(rows, thresholds, multi):
    head = ['model', 'stride', 'tap'] + [f'A@{t:g}' for t in thresholds] + ['coverage']
    if multi:
        head.append('temp. share')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for label, stride, tap, m in rows:
        cells = [label, str(stride), tap] + [fmt(m.get(f'area@{t:g}')) for t in thresholds]
        cells.append(fmt(m['coverage'], '.3f'))
        if multi:
            cells.append(fmt(m['temporal_share'], '.3f') if 'temporal_share' in m else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def run_model_comparison(args):
    """``--models``: the same N(0, 1) inputs through every model, spatial ERF of the tap
    matched to each ``--strides`` entry (or its ST-ERF delays), one figure, one table."""
    import torch
    from mmengine.utils import ProgressBar

    from mmsnn.analysis import DEFAULT_THRESHOLDS, analyze_backbone, is_multi_step
    from mmsnn.analysis import make_noise_inputs
    from mmsnn.analysis.plots import plot_erf_grid
    specs = comparison_specs(args)
    size = tuple(args.size)
    torch.manual_seed(args.seed)
    models = []
    for label, spec, ckpt in specs:
        backbone, note = build_any_backbone(spec, ckpt)
        backbone = backbone.to(args.device)
        if args.calibrate_bn > 0:
            p = next(backbone.parameters())
            calib = make_noise_inputs(args.calibrate_bn, size, seed=args.seed + 1,
                                      dtype=p.dtype, device=p.device)
            if calibrate_batchnorm(backbone, calib, args.batch_size):
                note += f', BN calibrated on {args.calibrate_bn} noise images'
        taps = match_strides(label, tap_strides(backbone, size), args.strides)
        if args.objective == 'relu':
            backbone = relu_taps(backbone)
        models.append((label, backbone, note, taps))
    per_step = args.encoding == 'per-step'
    chunks = -(-args.num_inputs // args.batch_size)
    print(f'ERF of {len(models)} model(s) at strides {args.strides}, {args.num_inputs} N(0,1) '
          f'inputs of {size[0]}x{size[1]} ({args.encoding} encoding for multi-step SNNs), '
          f'objective={args.objective}, grad={args.grad}, reduce={args.reduce}'
          + (f', BN calibrated on {args.calibrate_bn} other noise images'
             if args.calibrate_bn else ''))
    bar = ProgressBar(len(models) * chunks, file=sys.stdout)  # the current stdout
    results = []
    for label, backbone, note, taps in models:
        p = next(backbone.parameters())
        T = int(backbone.T) if per_step and is_multi_step(backbone) else None
        x = make_noise_inputs(args.num_inputs, size, time_steps=T, seed=args.seed,
                              dtype=p.dtype, device=p.device)
        s = analyze_backbone(backbone, x, sorted(set(taps.values())), grad=args.grad,
                             reduce=args.reduce, batch_size=args.batch_size,
                             progress=bar.update, batched_grads=args.batched_grads)
        results.append((label, note, taps, s))
    print()
    os.makedirs(args.out_dir, exist_ok=True)
    rows, grid, notes, record = [], [], [], {}
    if args.delays:
        stride = args.strides[-1]
        T_max = max(s['T'] for *_, s in results)
        cols = [f'stride {stride}, tau={tau}' for tau in range(T_max)]
    else:
        cols = [f'stride {st}' for st in args.strides]
    for label, note, taps, s in results:
        record[label] = dict(note=note, T=s['T'], taps={})
        for st in args.strides:
            e = s['taps'][f'tap{taps[st]}']
            rows.append((label, st, f'tap{taps[st]}', e['metrics']))
            record[label]['taps'][f'stride{st}'] = dict(tap=taps[st], metrics=e['metrics'])
        if args.delays:
            e = s['taps'][f'tap{taps[args.strides[-1]]}']
            maps = (list(e['delays']) if e['delays'] is not None else [e['spatial'][-1]])
            grid.append(maps + [None] * (len(cols) - len(maps)))
            notes.append([f'tau {tau}' for tau in range(len(maps))] + [''] * (len(cols) -
                                                                               len(maps)))
        else:
            entries = [s['taps'][f'tap{taps[st]}'] for st in args.strides]
            grid.append([e['spatial'][-1] for e in entries])
            notes.append([f"cov {e['metrics']['coverage']:.2f}\n"
                          f"A@0.5 {e['metrics']['area@0.5']:.3f}" for e in entries])
    what = 'ST-ERF delays' if args.delays else 'spatial ERF'
    fig = plot_erf_grid(grid, osp.join(args.out_dir, 'models.png'),
                        row_labels=[r[0] for r in results], col_labels=cols,
                        normalize=args.normalize, annotate=notes,
                        title=f'{what}, input {size[0]}x{size[1]}, N={args.num_inputs}')
    multi = any('temporal_share' in m for *_, m in rows)
    table = markdown_table(rows, DEFAULT_THRESHOLDS, multi)
    with open(osp.join(args.out_dir, 'models_table.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(args.out_dir, 'models_summary.json'), 'w') as f:
        from mmsnn.analysis.plots import _json_safe
        json.dump(_json_safe(record), f, indent=2)
    print(table)
    for label, note, *_ in results:
        print(f'  {label}: {note}')
    print(f'figure: {fig}\ntable: {osp.join(args.out_dir, "models_table.md")}')
    return results


# ---------------------------------------------------------------------------- benchmark
def per_sample_per_target(model, x, targets, out_steps):
    """The baseline the engine is timed against: one forward per target per sample (each
    with a backward per output step), maps averaged over the samples."""
    import torch

    from mmsnn.analysis import compute_erf
    five_d = x.dim() == 5
    B = x.shape[1] if five_d else x.shape[0]
    maps = {}
    for name, spec in targets.items():
        runs = [compute_erf(model, x[:, b:b + 1] if five_d else x[b:b + 1], {name: spec},
                            out_steps=out_steps).maps[name] for b in range(B)]
        maps[name] = torch.stack(runs).mean(0)
    return maps


def run_benchmark(args):
    """One forward + one backward per target (mmsnn.analysis.compute_erf) against one
    forward + backward per target per sample (naive), on the same model and inputs."""
    import torch

    from mmsnn.analysis import compute_erf, is_multi_step, make_noise_inputs
    from mmsnn.models import MetaSDT
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dims = tuple(args.embed_dims) if args.embed_dims else (16, 32, 64, 96)
    kw = dict(embed_dims=dims, mixer=(args.mixers or ['srb'])[0], out_indices=(1, 2, 3, 4))
    if args.T is not None:
        kw['T'] = args.T
    if args.neuron is not None:
        kw['neuron_cfg'] = dict(type=args.neuron)
    model = MetaSDT(**kw).eval()
    n = args.num_inputs if args.num_inputs != 8 else 4
    size = tuple(args.size) if args.size != [224, 224] else (64, 64)
    T = model.T if is_multi_step(model) else None
    x = make_noise_inputs(n, size, time_steps=T, seed=args.seed)
    targets = {f'tap{k}': i for i, k in enumerate(model.out_indices)}
    targets.update({'block3.0': 'block3.0', 'ConvBlock2_1.0': 'ConvBlock2_1.0'})
    steps = 'all' if T else 'last'
    print(f'benchmark: MetaSDT{dims} mixer={kw["mixer"]} T={model.T} '
          f'({"multi-step" if T else "single-step"}), {n} inputs {size[0]}x{size[1]}, '
          f'{len(targets)} targets, output steps: {steps}')

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    compute_erf(model, x[:, :1] if T else x[:1], targets, out_steps=steps)  # warm-up
    fast, t_fast = timed(lambda: compute_erf(model, x, targets, out_steps=steps))
    naive, t_naive = timed(lambda: per_sample_per_target(model, x, targets, steps))
    batched, t_batched = timed(lambda: compute_erf(model, x, targets, out_steps=steps,
                                                   batched_grads=True))
    err = max(float((fast.maps[k] - naive[k]).abs().max()) for k in targets)
    err_b = max(float((batched.maps[k] - naive[k]).abs().max()) for k in targets)
    scale = max(float(naive[k].abs().max()) for k in targets)
    print(f'  naive (1 forward per target per sample): {t_naive:8.3f} s')
    print(f'  one forward, backward per target        : {t_fast:8.3f} s   '
          f'speed-up x{t_naive / t_fast:.1f}  (max |diff| {err:.2e}, map max {scale:.2e})')
    print(f'  one forward, batched backward (vmap)    : {t_batched:8.3f} s   '
          f'speed-up x{t_naive / t_batched:.1f}  (max |diff| {err_b:.2e})'
          + ('' if batched.batched_grads else '  [vmap unavailable: ran the loop]'))
    return dict(naive=t_naive, fast=t_fast, batched=t_batched, ratio=t_naive / t_fast,
                max_diff=err)


def main(argv=None):
    args = parse_args(argv)
    body = run_benchmark if args.benchmark else \
        run_model_comparison if args.models else run_analysis
    return run_tool(body, args)


if __name__ == '__main__':
    main()
