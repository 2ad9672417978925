#!/usr/bin/env python
"""Which op sets a train step's peak memory: the peak RSS while each op ran (Linux).

    python tools/analysis/peak_rss_by_op.py --model maskrcnn --T 4 --with-cp --size 800x1344
    python tools/analysis/peak_rss_by_op.py --model backbone-s --size 384x640 --top 20

One train step of a model of ``tools/analysis/benchmark_compile.py`` (the same build, input
and step), with glibc's mmap threshold fixed so that the RSS follows the live memory, under
:class:`mmsnn.analysis.benchmark.rss_by_op.PeakRSSByOp`. Prints the ops of the highest peaks
and those that held the most memory of their own (scratch: the peak beyond both the RSS
before and after the op), in MiB above the RSS after building model and input. The step
runs a few times slower than without the mode.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmsnn.cli.arguments import image_size  # noqa: E402
from mmsnn.utils.errors import MMSNNUserError, run_tool  # noqa: E402


def parse_args(argv=None):
    from mmsnn.analysis.compile_benchmark import MODELS
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='maskrcnn', choices=list(MODELS))
    p.add_argument('--size', type=image_size, help='HxW (default: the benchmark\'s size)')
    p.add_argument('--T', type=int, default=1, help='time steps; T > 1: I-LIF backbone')
    p.add_argument('--with-cp', action='store_true',
                   help='activation checkpointing of backbone, neck and RPN head')
    p.add_argument('--top', type=int, default=12, help='rows of each list')
    return p.parse_args(argv)


def _line(row, scratch):
    shapes = ' '.join('x'.join(map(str, s)) or 'scalar' for s in row['shapes'])
    return (f"{row['peak']:8.0f} {row['before']:8.0f} {row['after']:8.0f} {scratch:8.0f}  "
            f"#{row['index']:<6} {row['op']}  {shapes}")


def main(argv=None):
    args = parse_args(argv)
    from mmsnn.analysis.benchmark.processes import rss_mib
    from mmsnn.analysis.benchmark.rss_by_op import PeakRSSByOp, peak_rss_per_op_available
    if not peak_rss_per_op_available():
        raise MMSNNUserError('this kernel does not let a process reset its peak-RSS mark '
                             '(/proc/self/clear_refs, VmHWM): run this on Linux')
    import torch

    from mmsnn.analysis import compile_benchmark as cb
    from mmsnn.deploy.allocator import fix_mmap_threshold
    from mmsnn.utils.machine import cpu_description
    size = args.size or cb.MODELS[args.model][1]
    model = cb.build(args.model, args.T, args.with_cp)
    step = cb.step_fn(args.model, model, 'train', cb.make_inputs(args.model, model, size))
    fix_mmap_threshold()
    base = rss_mib()
    with PeakRSSByOp() as mode:
        step()
    print(f'{args.model} {size[0]}x{size[1]} train step, T={args.T}'
          f'{" with_cp" if args.with_cp else ""}: {len(mode.rows)} ops; CPU {cpu_description()}, '
          f'{torch.get_num_threads()} thread(s). MiB above the RSS after building ({base:.0f})')
    rows = [dict(r, before=r['before'] - base, peak=r['peak'] - base, after=r['after'] - base)
            for r in mode.rows]
    header = f"{'peak':>8} {'before':>8} {'after':>8} {'scratch':>8}  op"
    for title, key in (('highest peaks', lambda r: r['peak']),
                       ('most scratch (memory the op held beyond its inputs and outputs)',
                        PeakRSSByOp.scratch)):
        print(f'\n{title}\n{header}')
        for row in sorted(rows, key=key, reverse=True)[:args.top]:
            print(_line(row, PeakRSSByOp.scratch(row)))
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
