"""The ERF comparisons of ``tools/analysis/st_erf.py``: models side by side by tap
(:func:`run_analysis`), any mix of backbones at matched strides (:func:`run_model_comparison`)
and the speed of the one-forward ERF engine (:func:`run_benchmark`). Each takes the tool's
parsed arguments (its ``--help`` documents them) and writes figures, tables and JSON under
``args.out_dir``.
"""
import json
import os
import os.path as osp
import sys
import time

from .erf_models import (build_backbone, build_from_config, calibrate_batchnorm, match_strides,
                         model_specs, relu_taps, tap_strides)


def specs_of(args):
    """:func:`~mmsnn.analysis.erf_models.model_specs` of the tool's arguments."""
    return model_specs(configs=args.configs, checkpoints=args.checkpoint,
                       backbones=args.backbone, mixers=args.mixers, arch=args.arch,
                       embed_dims=args.embed_dims, T=args.T, neuron=args.neuron,
                       models=args.models, model_checkpoints=args.model_checkpoints,
                       labels=args.labels, taps=args.taps, delays=args.delays,
                       encoding=args.encoding)


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
    specs = specs_of(args)
    torch.manual_seed(args.seed)
    models = []
    for label, kind, payload in specs:
        if kind == 'config':
            backbone, note = build_from_config(*payload, cfg_options, args.taps)
        else:  # a bare backbone: its class's own initialisation, as before the comparison
            backbone, note = build_backbone(payload[0], taps=args.taps)
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
    specs = specs_of(args)
    size = tuple(args.size)
    torch.manual_seed(args.seed)
    models = []
    for label, _, (spec, ckpt) in specs:
        backbone, note = build_backbone(spec, ckpt, toolbox_init=True)
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

    # one wall-clock reading per call, not torch.utils.benchmark.Timer: each call is long
    # (seconds) and its result is kept and compared, so repeating it would only add minutes
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
