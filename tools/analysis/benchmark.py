"""Throughput and peak memory of the spiking detector / segmentor, against their ReLU twins.

    python tools/analysis/benchmark.py                       # det + seg, demo + real sizes
    python tools/analysis/benchmark.py --tasks det --sizes demo --iters 3 --json bench.json
    python tools/analysis/benchmark.py --sizes demo --docs   # rewrite docs/en/benchmarks.md's table
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

What makes the comparison fair (``mmsnn.analysis.benchmark.fairness``), the same for every variant:
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

Every measurement runs in its own subprocess (peaks do not mix). The train step's peak is read
on a train step of its own before the timed calls (CPU: peak RSS above the RSS before it, with
glibc's mmap threshold fixed so freed tensors leave the RSS at once; CUDA:
max_memory_allocated); the timed calls then run with glibc's thresholds where its default rule
settles, as in a training run (``mmsnn.analysis.benchmark.processes.peak_of_first_step``). All rows of one call are measured side
by side on the same machine; ratios are printed at the end and written as JSON.

``--fast-path`` instead times inference (``test_step``, no grad) of the reference model
(snn-T1) before and after ``mmsnn.deploy.convert_for_inference``: plain, fused
(``tools/test.py --fuse-conv-bn``) and fast (also ``--keep-freed-memory``) each in its own
process, alternating, ``--iters`` rounds, medians (``mmsnn.analysis.benchmark.fast_path``).

The configs, variants, ratios and the Markdown block are in
``mmsnn.analysis.benchmark.cost_of_spiking``; ``--docs`` writes the block between the markers
``<!-- benchmark.py:cost-of-spiking -->`` / ``<!-- /benchmark.py:cost-of-spiking -->`` of
``docs/en/benchmarks.md`` (``--readme FILE``, the former flag, of any file with them).
"""
import argparse
import copy
import datetime
import os
import os.path as osp
import shlex
import sys
import time

import mmengine

from mmsnn.analysis.benchmark.cost_of_spiking import (CONFIGS, SCOPES, VARIANTS, build,
                                                      git_commit, machine_text, make_batch,
                                                      quiet_init, range_text, ratio_rows,
                                                      results_block, rois_text)
from mmsnn.analysis.benchmark.docs_block import BENCHMARKS_PAGE, block_problem, replace_block
from mmsnn.analysis.benchmark.fairness import activation_range, calibrate_batchnorm, fixed_rois
from mmsnn.analysis.benchmark.processes import (MeasurementFailed, peak_of_first_step,
                                                print_result, run_measurement)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


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

    # best of N single steps, timed here rather than by torch.utils.benchmark.Timer: that
    # reports a mean over blocks and sets its own thread count (1 unless told), while this
    # process exists to time one variant in the thread setting it was started with
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
        # the train step's peak, on a step of its own before the timed calls (glibc's mmap
        # threshold fixed for it); the weights, statistics and optimizer state it changes are
        # put back, so the timed calls start from the calibrated model
        saved = copy.deepcopy(model.state_dict())
        model.train()
        out['train_peak_mib'] = peak_of_first_step(train, dev)
        model.load_state_dict(saved)
        optim.optimizer.state.clear()
        if seen is not None:
            seen['bbox'].clear()
            seen['mask'].clear()
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
        if seen is not None:
            out['rois_train'] = dict(bbox=sorted(set(seen['bbox'])),
                                     mask=sorted(set(seen['mask'])))
    print_result(out)


def fast_path(args):
    """Inference of the plain, fused and fast snn-T1 model, in alternating processes."""
    from mmsnn.analysis.benchmark.fast_path import measure, report
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

    from mmsnn.analysis.benchmark.fast_path import child, prepare
    dev = torch.device(args.device)
    cfg_path, shape = CONFIGS[(args.task, args.size_key)]
    torch.manual_seed(0)
    model = prepare(build(args.task, args.size_key, 'snn-T1', dev), args.fast_path_variant)
    data = make_batch(args.task, shape, args.batch, args.device)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    child(lambda: model.test_step(data), sync, args.fast_path_profile, model)


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
    p.add_argument('--docs', nargs='?', const=osp.join(ROOT, BENCHMARKS_PAGE), metavar='PAGE',
                   help='rewrite the block between "<!-- benchmark.py:cost-of-spiking -->" and '
                        '"<!-- /benchmark.py:cost-of-spiking -->" of this Markdown page with '
                        f'the results (default {BENCHMARKS_PAGE})')
    p.add_argument('--readme', metavar='README_MD',
                   help='former name of --docs PAGE (kept for one release)')
    p.add_argument('--fast-path', action='store_true',
                   help='time inference before/after convert_for_inference, in alternating '
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
    page = args.docs or args.readme
    if page and (args.fast_path or block_problem(page)):
        p.error('--docs / --readme does not go with --fast-path' if args.fast_path
                else block_problem(page))
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.child:
        return measure(args)
    if args.fast_path_variant:
        return fast_path_child(args)
    if args.fast_path:
        return fast_path(args)

    env = dict(PYTHONPATH=os.pathsep.join(
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
                    tag = dict(task=task, size=f'{shape[0]}x{shape[1]}', size_key=size_key,
                               variant=variant, scope=scope)
                    head = f'{task:4} {tag["size"]:9} {scope:13} {variant:9} |'
                    try:
                        r = run_measurement(cmd, head, env=env, cwd=ROOT)
                    except MeasurementFailed as e:  # e.g. killed for memory: say, go on
                        print(f'{head} failed: exit {e.returncode}: {e.reason}', flush=True)
                        results.append(dict(tag, error=f'exit {e.returncode}: {e.reason}'))
                        continue
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
        mmengine.dump(dict(results=results, ratios=ratios), args.json, file_format='json',
                      indent=2)
    if page:
        threads = (f'OMP_NUM_THREADS={os.environ["OMP_NUM_THREADS"]} '
                   if 'OMP_NUM_THREADS' in os.environ else '')
        meta = dict(command=threads + ' '.join(['.venv/bin/python', 'tools/analysis/benchmark.py']
                                               + [shlex.quote(a) for a in sys.argv[1:]]),
                    date=datetime.datetime.now(datetime.timezone.utc).strftime(
                        '%Y-%m-%d %H:%M UTC'),
                    commit=git_commit(ROOT), machine=machine_text(args.device),
                    batch=args.batch, timing=timing)
        with open(page) as f:
            text = f.read()
        with open(page, 'w') as f:
            f.write(replace_block(text, results_block(results, ratios, meta)))
        print(f'wrote the cost-of-spiking table of {page}')


if __name__ == '__main__':
    main()
