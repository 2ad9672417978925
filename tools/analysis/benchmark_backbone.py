"""Speed and memory of the MetaSDT attention order, measured side by side in one run.

    python tools/analysis/benchmark_backbone.py                 # l-size SRB, 512^2 and 800x1216
    python tools/analysis/benchmark_backbone.py --arch s --sizes 256x256 --repeats 1
    python tools/analysis/benchmark_backbone.py --fast-path --archs s l --sizes 800x1216
    python tools/analysis/benchmark_backbone.py --sizes 800x1216 --modes train --orders linear \
        --allocator fixed-mmap-threshold      # the allocator the benchmarks timed under before

For each input size it times forward (eval, no grad) and forward+backward (train step) of
the same backbone with the linear attention order ``q (k^T v)`` (mmsnn's default) and with
the reference's quadratic order ``(q k^T) v``, and reports peak memory. Each measurement runs
in a fresh subprocess so peaks do not mix: on CUDA the peak is ``max_memory_allocated``; on
the CPU it is the peak RSS of the first (warm-up) step above the RSS after building the model
and input, with glibc's mmap threshold fixed for that step so that freed tensors leave the RSS
at once; the timed steps then run with glibc's thresholds where its default rule settles, as in
a training run (``mmsnn.analysis.benchmark.processes.peak_of_first_step``).
Ratios (linear / quadratic) are printed at the end; targets from issue 3: at 800x1216 the
train step's peak memory <= 0.4x the quadratic order's and no slower. Each cell also reports
the CPU time (user + system) and the minor page faults per timed step, and ``--allocator``
sets glibc's allocator for the measuring processes: ``default`` (as a training run),
``fixed-mmap-threshold`` (``MALLOC_MMAP_THRESHOLD_=131072``: every block above 128 KiB mapped
fresh and returned at once, what these benchmarks timed under from eb84168 until 2026-12) or
``keep-freed`` (``MALLOC_MMAP_MAX_=0``, no trimming: what ``--keep-freed-memory`` does).

``--fast-path`` instead times inference (eval, no grad) of each ``--archs`` backbone before and
after ``convert_for_inference`` (issue 14): plain, fused (``tools/test.py --fuse-conv-bn``) and
fast (also ``--keep-freed-memory``) each in its own process, alternating, ``--repeats`` rounds
(``mmsnn.analysis.benchmark.fast_path``).
"""
import argparse
import resource
import sys
import time

import mmengine

from mmsnn.analysis.benchmark.processes import (MeasurementFailed, peak_of_first_step,
                                                print_result, run_measurement)
from mmsnn.cli.arguments import image_size


def measure(args):
    """Child: one (order, size, mode) measurement; prints a JSON line."""
    import torch

    from mmsnn.models import MetaSDT
    torch.manual_seed(0)
    dev = torch.device(args.device)
    h, w = args.size
    model = MetaSDT(arch=args.arch, mixer=args.mixer, attn_order=args.order,
                    out_indices=(1, 2, 3, 4), with_cp=args.with_cp,
                    compact_spikes=not args.no_compact_spikes).to(dev)
    x = torch.randn(args.batch, 3, h, w, device=dev)
    train = args.mode == 'train'
    model.train(train)

    def step():
        if train:
            loss = sum(o.float().mean() for o in model(x))
            loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(x)
        if dev.type == 'cuda':
            torch.cuda.synchronize()

    # per-process timing (not torch.utils.benchmark.Timer): a fresh process per measurement is
    # what keeps the peaks apart, and min over a few long steps is all that is needed
    # baseline before any step: model, input and the Python runtime
    # warm-up (allocator, oneDNN primitives); its peak is the step's peak
    peak = peak_of_first_step(step, dev, manage_allocator=args.allocator == 'default')
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print_result(dict(time_s=min(times), peak_mib=peak,
                      cpu_s=(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / args.repeats,
                      minor_faults=(r1.ru_minflt - r0.ru_minflt) / args.repeats))


def fast_path(args):
    """Inference of the plain, fused and fast backbone, in alternating processes."""
    from mmsnn.analysis.benchmark.fast_path import measure, report
    print(f'inference fast path, MetaSDT {args.mixer}, batch {args.batch}, device '
          f'{args.device}, {args.repeats} rounds of alternating processes')
    rows = []
    for arch in args.archs:
        for h, w in args.sizes:
            def cmd_for(variant, profile, arch=arch, h=h, w=w):
                return ([sys.executable, __file__, '--fast-path-variant', variant, '--arch', arch,
                         '--mixer', args.mixer, '--size', str(h), str(w), '--batch',
                         str(args.batch), '--device', args.device]
                        + (['--fast-path-profile'] if profile else []))
            rows.append(measure(f'MetaSDT-{arch} {args.mixer} {h}x{w}', cmd_for, args.repeats,
                                args.profile))
    return report(rows, args.json)


def fast_path_child(args):
    """One measuring process of :func:`fast_path`."""
    import torch

    from mmsnn.analysis.benchmark.fast_path import child, prepare
    from mmsnn.models import MetaSDT
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = prepare(MetaSDT(arch=args.arch, mixer=args.mixer, out_indices=(1, 2, 3, 4)).to(dev),
                    args.fast_path_variant)
    x = torch.randn(args.batch, 3, *args.size, device=dev)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    child(lambda: model(x), sync, args.fast_path_profile, model)


#: glibc settings of the measuring processes (``--allocator``), as environment variables
ALLOCATORS = {
    'default': {},
    'fixed-mmap-threshold': dict(MALLOC_MMAP_THRESHOLD_='131072'),
    'keep-freed': dict(MALLOC_MMAP_MAX_='0', MALLOC_TRIM_THRESHOLD_=str(2**31 - 1)),
}


def run_child(args, order, size, mode):
    cmd = [sys.executable, __file__, '--child', '--arch', args.arch, '--mixer', args.mixer,
           '--order', order, '--size', str(size[0]), str(size[1]), '--mode', mode,
           '--repeats', str(args.repeats), '--batch', str(args.batch), '--device', args.device,
           '--allocator', args.allocator]
    cmd += ['--with-cp'] if args.with_cp else []
    cmd += ['--no-compact-spikes'] if args.no_compact_spikes else []
    try:
        return run_measurement(cmd, f'{order} {size} {mode}', env=ALLOCATORS[args.allocator])
    except MeasurementFailed as e:
        raise SystemExit(f'measurement {order} {size} {mode} failed:\n{e.stderr[-2000:]}') \
            from None


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='l')
    p.add_argument('--mixer', default='srb')
    p.add_argument('--sizes', nargs='+', type=image_size, default=[(512, 512), (800, 1216)])
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--device', default='cuda' if _cuda() else 'cpu')
    p.add_argument('--with-cp', action='store_true',
                   help='activation checkpointing of every block, in both orders')
    p.add_argument('--no-compact-spikes', action='store_true',
                   help='save spikes for the backward pass as float32 (MetaSDT compact_spikes=False)')
    p.add_argument('--modes', nargs='+', choices=['eval', 'train'], default=['eval', 'train'])
    p.add_argument('--orders', nargs='+', choices=['linear', 'quadratic'],
                   default=['linear', 'quadratic'])
    p.add_argument('--allocator', choices=sorted(ALLOCATORS), default='default',
                   help="glibc's allocator in the measuring processes (see the docstring)")
    p.add_argument('--fast-path', action='store_true',
                   help='time inference before/after convert_for_inference, in alternating '
                   'processes (--repeats rounds)')
    p.add_argument('--archs', nargs='+', default=['s', 'l'], help='with --fast-path')
    p.add_argument('--profile', action='store_true',
                   help='with --fast-path: top ops of plain and fast and their dense-arithmetic share')
    p.add_argument('--json', help='also write the results here')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--order', help=argparse.SUPPRESS)
    p.add_argument('--size', nargs=2, type=int, help=argparse.SUPPRESS)
    p.add_argument('--mode', help=argparse.SUPPRESS)
    p.add_argument('--fast-path-variant', help=argparse.SUPPRESS)
    p.add_argument('--fast-path-profile', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return measure(args)
    if args.fast_path_variant:
        return fast_path_child(args)
    if args.fast_path:
        return fast_path(args)

    rows = []
    print(f'MetaSDT-{args.arch} {args.mixer}, batch {args.batch}, device {args.device}, '
          f'allocator {args.allocator}'
          f'{", with_cp" if args.with_cp else ""}'
          f'{", float32 spike storage" if args.no_compact_spikes else ""}')
    print(f'{"size":>10} {"mode":>6} {"order":>9} | {"s/step":>7} {"CPU s":>7} '
          f'{"faults":>9} {"peak MiB":>9}')
    for size in args.sizes:
        for mode in args.modes:
            row = dict(size=f'{size[0]}x{size[1]}', mode=mode)
            for order in args.orders:
                r = row[order] = run_child(args, order, size, mode)
                print(f'{row["size"]:>10} {mode:>6} {order:>9} | {r["time_s"]:7.3f} '
                      f'{r["cpu_s"]:7.2f} {r["minor_faults"]:9.0f} {r["peak_mib"]:9.1f}')
            if len(args.orders) == 2:
                lin, quad = row['linear'], row['quadratic']
                row.update(time_ratio=lin['time_s'] / quad['time_s'],
                           mem_ratio=lin['peak_mib'] / max(quad['peak_mib'], 1e-9))
                print(f'{"":>10} {"":>6} {"ratio":>9} | {row["time_ratio"]:7.2f} '
                      f'{"":>7} {"":>9} {row["mem_ratio"]:9.3f}')
            rows.append(row)
    trains = [r for r in rows if r['mode'] == 'train' and 'mem_ratio' in r]
    if trains:
        big = trains[-1]
        print(f'target at {big["size"]} train step: memory ratio {big["mem_ratio"]:.3f} (<= 0.4: '
              f'{"met" if big["mem_ratio"] <= 0.4 else "NOT met"}), time ratio '
              f'{big["time_ratio"]:.2f} (<= 1: {"met" if big["time_ratio"] <= 1.0 else "NOT met"})')
    if args.json:
        mmengine.dump(rows, args.json, file_format='json', indent=2)


def _cuda():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == '__main__':
    main()
