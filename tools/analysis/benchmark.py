"""Throughput and peak memory of the spiking detector / segmentor, against their ReLU twins.

    python tools/analysis/benchmark.py                       # det + seg, demo + real sizes
    python tools/analysis/benchmark.py --tasks det --sizes demo --iters 3 --json bench.json
    python tools/analysis/benchmark.py --sizes demo --readme README.md   # rewrite its table
    python tools/analysis/benchmark.py --fast-path --sizes real --iters 5   # issue 14
    python tools/analysis/benchmark.py --fast-path --profile --tasks det --sizes demo

For each task (Mask R-CNN from configs/det, Semantic FPN from configs/seg), input size
(the demo's, and the real COCO 800x1333 / ADE20K 512x512 inputs) and model variant it measures
the train step (forward, backward, AdamW step) and inference in images/s, and the peak memory
of the train step. Variants:

    snn-T1     the reference: integer quantiser, T = 1
    snn-T4int  integer quantiser with T = 4: virtual time, the same single step (cost ~ T1)
    snn-T4     I-LIF multi-step neurons, T = 4 real steps (keep_time; heads average logits)
    relu-T1    the same network with ReLU in place of every neuron
    relu-T4    ReLU twin run over 4 steps like snn-T4

Two scopes, each measured separately: ``backbone+neck`` (``model.extract_feat``: forward, and
for training backward of the mean of the neck outputs + AdamW step over backbone and neck;
the Semantic FPN has a neck too, the SpikingFPN, so the scope is the same for both tasks) and
``full`` (``train_step`` / ``test_step`` of the whole model).

What makes the comparison fair (``_cost_of_spiking.py``), the same for every variant:
the model is initialised as a training run does it (``init_weights``: the configs'
``init_cfg``), then normalised on the benchmark batch (every BatchNorm's running statistics
set to those of its input, so eval-mode BN outputs are about N(0, 1); without it the ReLU
twin overflows to inf/NaN at COCO size and the spiking model's counts die out). The range of
the activations before and after is printed for every variant (``--no-normalise``: skip it).
The detectors' RoI heads get a fixed set of proposals and, at inference, of detections
(``fixed_rois``: as many as the config keeps, e.g. 1000 proposals / 512 sampled RoIs / 100
detections), so both models' heads do the same work (``--free-rois``: let the RPN and NMS
decide, as before). Inference is timed before training (the optimiser steps would move the
weights away from the normalised state).

Every measurement runs in its own subprocess (peaks do not mix; CPU peak = peak RSS above the
RSS after building, with glibc's mmap threshold fixed so freed tensors leave the RSS at once;
CUDA peak = max_memory_allocated). All rows of one call are measured side
by side on the same machine; ratios are printed at the end and written as JSON.

``--fast-path`` instead times inference (``test_step``, no grad) of the reference model
(snn-T1) before and after ``mmsnn.models.fuse_for_inference``: plain, fused
(``tools/test.py --fuse-conv-bn``) and fast (also ``--keep-freed-memory``) each in its own
process, alternating, ``--iters`` rounds, medians (``_fast_path.py``).
"""
import argparse
import datetime
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time

from _cost_of_spiking import (activation_range, calibrate_batchnorm, fixed_rois, readme_problem,
                              replace_readme_block)
from _memory import CHILD_ENV, memory_base, peak_above

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    ('det', 'demo'): ('configs/det/demo/sdt_srb_s_demo.py', (128, 128)),
    ('det', 'real'): ('configs/det/sdt_srb_s_coco.py', (800, 1344)),  # 800x1333, padded /32
    ('seg', 'demo'): ('configs/seg/demo/sdt_srb_demo.py', (96, 96)),
    ('seg', 'real'): ('configs/seg/sdt_srb_s_ade20k.py', (512, 512)),
}
VARIANTS = {
    'snn-T1': dict(T=1, neuron=None, head=None),
    'snn-T4int': dict(T=4, neuron=None, head=None),
    'snn-T4': dict(T=4, neuron=dict(type='ILIF'), head=None),
    'relu-T1': dict(T=1, neuron=dict(type='ReLU'), head=dict(type='ReLU')),
    'relu-T4': dict(T=4, neuron=dict(type='ReLU', multistep=True), head=dict(type='ReLU')),
}
SCOPES = ('backbone+neck', 'full')
#: (name, variant a, variant b): the ratio is a's time / b's time
RATIOS = (('SNN/ReLU at T=1', 'snn-T1', 'relu-T1'),
          ('SNN/ReLU at T=4', 'snn-T4', 'relu-T4'),
          ('I-LIF T=4 / T=1', 'snn-T4', 'snn-T1'),
          ('integer T=4 / T=1', 'snn-T4int', 'snn-T1'))


def set_head_neurons(model_cfg, head_cfg):
    """Put ``neuron_cfg=head_cfg`` into the neck and every spiking head of a model config."""
    for key in ('neck', 'rpn_head', 'decode_head'):
        if key in model_cfg:
            model_cfg[key]['neuron_cfg'] = head_cfg
    if 'roi_head' in model_cfg:
        for key in ('bbox_head', 'mask_head'):
            model_cfg['roi_head'][key]['neuron_cfg'] = head_cfg


def build(task, size_key, variant, device, with_cp=False):
    import torch  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsnn  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS[(task, size_key)][0]))
    init_default_scope(cfg.default_scope)
    v = VARIANTS[variant]
    bb = cfg.model.backbone
    bb.T = v['T']
    bb.neuron_cfg = v['neuron']
    bb.keep_time = v['T'] > 1 and (v['neuron'] is not None)
    bb.with_cp = with_cp
    if v['head'] is not None:
        set_head_neurons(cfg.model, v['head'])
    if task == 'seg':
        cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)  # no SyncBN
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    return registry.build(cfg.model).to(device)


def make_batch(task, shape, batch, device):
    import torch
    if task == 'det':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch, [(3, *shape)] * batch, num_items=[3] * batch,
                              num_classes=3, with_mask=True, device=device)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, *shape)))
        s.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=shape))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, *shape), dtype=torch.uint8)
                        for _ in range(batch)], data_samples=samples)


def quiet_init(model):
    """``model.init_weights()`` (the configs' ``init_cfg``, as a training run does) without
    mmengine's per-parameter log."""
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def measure(args):
    import contextlib

    import torch
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = build(args.task, args.size_key, args.variant, dev, args.with_cp)
    quiet_init(model)
    shape = tuple(args.shape) if args.shape else CONFIGS[(args.task, args.size_key)][1]
    data = make_batch(args.task, shape, args.batch, args.device)
    inputs = model.data_preprocessor(data, True)['inputs']
    rois = (fixed_rois(model, data['data_samples'])
            if args.task == 'det' and args.scope == 'full' and not args.free_rois
            else contextlib.nullcontext())
    out = dict(scope=args.scope)

    def sync():
        if dev.type == 'cuda':
            torch.cuda.synchronize()

    def timed(fn):
        if args.iters == 0:  # one cold step (for steps too long to repeat)
            t0 = time.perf_counter()
            fn()
            sync()
            return time.perf_counter() - t0
        fn()  # warm-up
        sync()
        best = float('inf')
        for _ in range(args.iters):
            t0 = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        return best

    with rois as seen:
        if args.scope == 'backbone+neck':
            optim = OptimWrapper(torch.optim.AdamW(
                list(model.backbone.parameters()) + list(model.neck.parameters()), lr=1e-4))

            def train():
                feats = model.extract_feat(inputs)
                optim.update_params(sum(f.float().mean() for f in feats))

            def infer():
                model.extract_feat(inputs)

            def calibrate():
                model.extract_feat(inputs)
        else:
            optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))

            def train():
                model.train_step(data, optim)

            def infer():
                model.test_step(data)

            def calibrate():
                model(**model.data_preprocessor(data, True), mode='loss')

        def in_range():
            return activation_range(model, lambda: model.extract_feat(inputs))

        if args.scope == 'backbone+neck':  # the evidence (once per variant is enough)
            out['range_before'] = in_range()
        if not args.no_normalise:
            calibrate_batchnorm(model, calibrate)
        if args.scope == 'backbone+neck':
            out['range_after'] = in_range()

        if seen is not None:  # count only the timed calls
            seen['bbox'].clear()
            seen['mask'].clear()
        base = memory_base(dev)
        out['infer_img_s'] = float('nan')
        if not args.no_infer:
            model.eval()
            with torch.no_grad():
                out['infer_img_s'] = args.batch / timed(infer)
        if seen is not None:
            out['rois_infer'] = dict(bbox=sorted(set(seen['bbox'])),
                                     mask=sorted(set(seen['mask'])))
            seen['bbox'].clear()
            seen['mask'].clear()
        model.train()
        out['train_img_s'] = args.batch / timed(train)
        out['train_peak_mib'] = peak_above(base, dev)
        if seen is not None:
            out['rois_train'] = dict(bbox=sorted(set(seen['bbox'])),
                                     mask=sorted(set(seen['mask'])))
    print(json.dumps(out))


def fast_path(args):
    """Inference of the plain, fused and fast snn-T1 model, in alternating processes."""
    from _fast_path import measure, report
    print(f'inference fast path, batch {args.batch}, device {args.device}, {args.iters} rounds '
          'of alternating processes')
    rows = []
    for task in args.tasks:
        for size_key in args.sizes:
            cfg_path, shape = CONFIGS[(task, size_key)]

            def cmd_for(variant, profile, task=task, size_key=size_key):
                return ([sys.executable, __file__, '--fast-path-variant', variant, '--task', task,
                         '--size-key', size_key, '--batch', str(args.batch), '--device',
                         args.device] + (['--fast-path-profile'] if profile else []))
            rows.append(measure(f'{task} {osp.basename(cfg_path)[:-3]} {shape[0]}x{shape[1]}',
                                cmd_for, max(args.iters, 1), args.profile))
    return report(rows, args.json)


def fast_path_child(args):
    """One measuring process of :func:`fast_path`."""
    import torch

    from _fast_path import child, prepare
    dev = torch.device(args.device)
    cfg_path, shape = CONFIGS[(args.task, args.size_key)]
    torch.manual_seed(0)
    model = prepare(build(args.task, args.size_key, 'snn-T1', dev), args.fast_path_variant)
    data = make_batch(args.task, shape, args.batch, args.device)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    child(lambda: model.test_step(data), sync, args.fast_path_profile, model)


def ratio_rows(results, tasks, sizes, scopes):
    """Time ratios (a's time / b's time = b's img/s / a's img/s) of :data:`RATIOS`, for every
    task, size and scope; nan where a variant is missing or failed."""
    rows = []
    for task in tasks:
        for size_key in sizes:
            for scope in scopes:
                row = {r['variant']: r for r in results if r['task'] == task and
                       r['size_key'] == size_key and r['scope'] == scope and 'error' not in r}
                for name, a, b in RATIOS:
                    def ratio(key):
                        if a in row and b in row:
                            return row[b][key] / row[a][key]
                        return float('nan')
                    rows.append(dict(task=task, size_key=size_key, scope=scope, ratio=name,
                                     train=ratio('train_img_s'), infer=ratio('infer_img_s')))
    return rows


def range_text(r):
    """One line of :func:`activation_range`'s evidence."""
    return (f'max|pre-act| {r["max_abs"]:9.3g}  non-finite {r["nonfinite"]:6.1%}  denormal '
            f'{r["denormal"]:6.1%}  active {r["active"]:6.1%}  tap RMS '
            + ' '.join(f'{t:.3g}' for t in r['tap_rms']))


def rois_text(r):
    if 'rois_train' not in r:
        return ''

    def one(d):
        return '/'.join(','.join(map(str, d[k])) or '-' for k in ('bbox', 'mask'))
    return f'rois+masks train {one(r["rois_train"])}, infer {one(r["rois_infer"])}'


def machine_text(device):
    """Cores, CPU model / GPU, torch threads, torch version."""
    import torch

    from mmsnn.utils.machine import cpu_description
    dev = (torch.cuda.get_device_name(0) if str(device).startswith('cuda') else 'CPU')
    return (f'{os.cpu_count()} cores ({cpu_description()}), device {dev}, torch '
            f'{torch.__version__}, {os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())}'
            ' thread(s)')


def git_commit():
    try:
        sha = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
        return sha + (' (with uncommitted changes)' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def readme_block(results, ratios, meta):
    """The README's cost-of-spiking block (markdown) from this run's results."""
    variants = [v for v in VARIANTS if any(r['variant'] == v for r in results)]
    lines = [f'```bash\n{meta["command"]}\n```', '',
             f'Measured {meta["date"]} at commit {meta["commit"]}; {meta["machine"]}; '
             f'batch {meta["batch"]}, {meta["timing"]}. Cells: train / inference images/s, '
             'peak MiB of the train step.', '',
             '| task | input | scope | ' + ' | '.join(variants) + ' |',
             '|---|---|---|' + '---|' * len(variants)]
    keys = []
    for r in results:
        if (r['task'], r['size'], r['scope']) not in keys:
            keys.append((r['task'], r['size'], r['scope']))
    for task, size, scope in keys:
        cells = []
        for v in variants:
            r = next((r for r in results if (r['task'], r['size'], r['scope'], r['variant']) ==
                      (task, size, scope, v)), None)
            if r is None:
                cells.append('')
            elif 'error' in r:
                cells.append('failed: ' + r['error'].split(':', 1)[-1].strip()[:60])
            else:
                cells.append(f'{r["train_img_s"]:.3g} / {r["infer_img_s"]:.3g} '
                             f'({r["train_peak_mib"]:.0f})')
        lines.append(f'| {task} | {size.replace("x", "×")} | {scope} | ' + ' | '.join(cells)
                     + ' |')
    lines += ['', 'Time ratios, train step (inference in brackets):', '',
              '| task | input | scope | ' + ' | '.join(n for n, _, _ in RATIOS) + ' |',
              '|---|---|---|' + '---|' * len(RATIOS)]
    size_of = {(r['task'], r['size_key']): r['size'] for r in results}
    for key in dict.fromkeys((q['task'], q['size_key'], q['scope']) for q in ratios):
        cells = [f'{q["train"]:.2f} ({q["infer"]:.2f})' for q in ratios
                 if (q['task'], q['size_key'], q['scope']) == key]
        lines.append(f'| {key[0]} | {size_of.get(key[:2], key[1]).replace("x", "×")} | '
                     f'{key[2]} | ' + ' | '.join(cells) + ' |')
    rng = [r for r in results if 'range_before' in r]
    if rng:
        lines += ['', 'Activation range, backbone + neck in eval mode at random init, before / '
                  'after the normalisation (over all neuron inputs: max |x|, the non-finite '
                  'and the denormal fraction; `active`: the fraction of non-zero neuron '
                  'outputs):', '',
                  '| task | input | variant | max \\|x\\| | non-finite | denormal | active |',
                  '|---|---|---|---|---|---|---|']
        for r in rng:
            b, a = r['range_before'], r.get('range_after', r['range_before'])
            lines.append(
                f'| {r["task"]} | {r["size"].replace("x", "×")} | {r["variant"]} | '
                f'{b["max_abs"]:.3g} / {a["max_abs"]:.3g} | {b["nonfinite"]:.1%} / '
                f'{a["nonfinite"]:.1%} | {b["denormal"]:.1%} / {a["denormal"]:.1%} | '
                f'{b["active"]:.1%} / {a["active"]:.1%} |')
    rois = sorted({(r['task'], r['size'], rois_text(r)) for r in results if rois_text(r)})
    if rois:
        lines += ['', 'RoIs the box / mask heads got per call (every variant alike): '
                  + '; '.join(f'{t} {s.replace("x", "×")}: {txt}' for t, s, txt in rois)
                  + '.']
    return '\n'.join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tasks', nargs='+', default=['det', 'seg'], choices=['det', 'seg'])
    p.add_argument('--sizes', nargs='+', default=['demo', 'real'], choices=['demo', 'real'])
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument('--scopes', nargs='+', default=list(SCOPES), choices=SCOPES,
                   help='what is timed: backbone+neck (extract_feat) and/or the full model')
    p.add_argument('--iters', type=int, default=2,
                   help='timed iterations after a warm-up; 0: time one cold step')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--device', default=None, help='cuda if available, else cpu')
    p.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'),
                   help='input size for every task and size (default: the configs\' sizes)')
    p.add_argument('--with-cp', action='store_true',
                   help='backbone activation checkpointing (MetaSDT with_cp) in every variant')
    p.add_argument('--no-infer', action='store_true', help='time the train step only')
    p.add_argument('--no-normalise', action='store_true',
                   help='skip the BatchNorm calibration on the benchmark batch')
    p.add_argument('--free-rois', action='store_true',
                   help='detectors: the RPN and NMS decide how many RoIs the heads get')
    p.add_argument('--readme', metavar='README_MD',
                   help='rewrite the block between "<!-- benchmark.py:cost-of-spiking -->" and '
                        '"<!-- /benchmark.py:cost-of-spiking -->" of this file with the results')
    p.add_argument('--fast-path', action='store_true',
                   help='time inference before/after fuse_for_inference, in alternating '
                   'processes (--iters rounds)')
    p.add_argument('--profile', action='store_true',
                   help='with --fast-path: top ops of plain and fast and their dense-arithmetic share')
    p.add_argument('--json', help='write the results here')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--task', help=argparse.SUPPRESS)
    p.add_argument('--size-key', help=argparse.SUPPRESS)
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--scope', help=argparse.SUPPRESS)
    p.add_argument('--fast-path-variant', help=argparse.SUPPRESS)
    p.add_argument('--fast-path-profile', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.readme and (args.fast_path or readme_problem(args.readme)):
        p.error('--readme does not go with --fast-path' if args.fast_path
                else readme_problem(args.readme))
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.child:
        return measure(args)
    if args.fast_path_variant:
        return fast_path_child(args)
    if args.fast_path:
        return fast_path(args)

    env = dict(os.environ, **CHILD_ENV, PYTHONPATH=os.pathsep.join(
        [ROOT] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))
    results = []
    timing = 'one cold step' if args.iters == 0 else f'best of {args.iters} after a warm-up'
    print(f'device {args.device}, batch {args.batch}, {timing}; '
          f'{"no normalisation" if args.no_normalise else "BN calibrated on the batch"}, '
          f'{"free" if args.free_rois else "fixed"} RoIs')
    print(f'{"task":4} {"size":9} {"scope":13} {"variant":9} | {"train img/s":>11} '
          f'{"infer img/s":>11} {"train peak MiB":>14}')
    for task in args.tasks:
        for size_key in args.sizes:
            shape = tuple(args.shape) if args.shape else CONFIGS[(task, size_key)][1]
            for scope in args.scopes:
                for variant in args.variants:
                    cmd = [sys.executable, osp.abspath(__file__), '--child', '--task', task,
                           '--size-key', size_key, '--variant', variant, '--scope', scope,
                           '--iters', str(args.iters), '--batch', str(args.batch),
                           '--device', args.device]
                    cmd += ['--shape', *map(str, args.shape)] if args.shape else []
                    for flag in ('with_cp', 'no_infer', 'no_normalise', 'free_rois'):
                        cmd += ['--' + flag.replace('_', '-')] if getattr(args, flag) else []
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                    tag = dict(task=task, size=f'{shape[0]}x{shape[1]}', size_key=size_key,
                               variant=variant, scope=scope)
                    head = f'{task:4} {tag["size"]:9} {scope:13} {variant:9} |'
                    if out.returncode:  # e.g. killed for memory: report it, measure the rest
                        why = ('killed (out of memory?)' if out.returncode < 0 else
                               (out.stderr.strip().splitlines() or ['?'])[-1][-200:])
                        print(f'{head} failed: exit {out.returncode}: {why}', flush=True)
                        results.append(dict(tag, error=f'exit {out.returncode}: {why}'))
                        continue
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    r.update(tag)
                    results.append(r)
                    print(f'{head} {r["train_img_s"]:11.3f} {r["infer_img_s"]:11.3f} '
                          f'{r["train_peak_mib"]:14.1f}  {rois_text(r)}', flush=True)
                    if 'range_before' in r:
                        print(f'    in range? before: {range_text(r["range_before"])}\n'
                              f'              after: {range_text(r["range_after"])}',
                              flush=True)

    print('\ntime ratios, train step (inference in brackets):')
    ratios = ratio_rows(results, args.tasks, args.sizes, args.scopes)
    for q in ratios:
        print(f'  {q["task"]} {q["size_key"]:4} {q["scope"]:13} {q["ratio"]:18} '
              f'{q["train"]:6.2f}  ({q["infer"]:.2f})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(results=results, ratios=ratios), f, indent=2)
    if args.readme:
        threads = (f'OMP_NUM_THREADS={os.environ["OMP_NUM_THREADS"]} '
                   if 'OMP_NUM_THREADS' in os.environ else '')
        meta = dict(command=threads + ' '.join(['.venv/bin/python', 'tools/analysis/benchmark.py']
                                               + [shlex.quote(a) for a in sys.argv[1:]]),
                    date=datetime.datetime.now(datetime.timezone.utc).strftime(
                        '%Y-%m-%d %H:%M UTC'),
                    commit=git_commit(), machine=machine_text(args.device), batch=args.batch,
                    timing=timing)
        with open(args.readme) as f:
            text = f.read()
        with open(args.readme, 'w') as f:
            f.write(replace_readme_block(text, readme_block(results, ratios, meta)))
        print(f'wrote the cost-of-spiking table of {args.readme}')


if __name__ == '__main__':
    main()
