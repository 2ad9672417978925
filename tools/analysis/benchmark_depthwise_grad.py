#!/usr/bin/env python
"""Depthwise weight gradients: oneDNN's against mmsnn's, at a Meta-SDT's training shapes.

    python tools/analysis/benchmark_depthwise_grad.py --archs s l --size 800x1216
    python tools/analysis/benchmark_depthwise_grad.py --archs s --size 800x1216 --T 4

mmsnn computes the weight gradient of its depthwise convs (the 7x7 SepConv of the conv
blocks) as a depthwise convolution (``mmsnn/ops/depthwise_conv.py``); where oneDNN has a
fast depthwise weight-gradient kernel of its own for a CPU, this table shows whether the
rewrite still earns its place there. Prints one row per shape (both kernels on the same
tensors, alternating, medians), the ratio, and the CPU.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmsnn.cli.arguments import check_meta_sdt_archs, image_size  # noqa: E402
from mmsnn.utils.errors import MMSNNUserError, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--archs', nargs='+', default=['s'], help='MetaSDT sizes (t, s, m, l, ...)')
    p.add_argument('--size', type=image_size, default=(800, 1216), help='image HxW')
    p.add_argument('--T', type=int, default=1, help='time steps folded into the batch')
    p.add_argument('--repeats', type=int, default=5, help='timed calls of each kernel')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.repeats < 1 or args.T < 1:
        raise MMSNNUserError('--repeats and --T must be at least 1')
    import torch

    from mmsnn.analysis.benchmark.depthwise_grad import depthwise_shapes, time_weight_grads
    check_meta_sdt_archs(args.archs)
    from mmsnn.utils.machine import cpu_description
    print(f'CPU {cpu_description()}, {torch.get_num_threads()} thread(s), torch '
          f'{torch.__version__}; image {args.size[0]}x{args.size[1]}, T={args.T}; medians of '
          f'{args.repeats} calls each, alternating')
    print(f"{'arch':5} {'input':>20} {'kernel':>7} {'oneDNN s':>9} {'mmsnn s':>9} "
          f"{'speed-up':>8} {'rel diff':>9}  model uses")
    total = {'onednn_s': 0.0, 'mmsnn_s': 0.0, 'model_s': 0.0}
    for arch in args.archs:
        for shape, weight_shape, padding, used in depthwise_shapes(arch, args.size, args.T):
            r = time_weight_grads(shape, weight_shape, padding, args.repeats)
            total['onednn_s'] += r['onednn_s']
            total['mmsnn_s'] += r['mmsnn_s']
            total['model_s'] += r['mmsnn_s' if used else 'onednn_s']
            print(f"{arch:5} {'x'.join(map(str, shape)):>20} "
                  f"{'x'.join(map(str, weight_shape[2:])):>7} {r['onednn_s']:9.4f} "
                  f"{r['mmsnn_s']:9.4f} {r['onednn_s'] / r['mmsnn_s']:7.2f}x "
                  f"{r['rel_diff']:9.1e}  {'mmsnn' if used else 'oneDNN'}")
    if total['model_s']:
        print(f"all: oneDNN {total['onednn_s']:.4f} s, mmsnn {total['mmsnn_s']:.4f} s, the "
              f"models' choice {total['model_s']:.4f} s "
              f"({total['onednn_s'] / total['model_s']:.2f}x oneDNN's)")
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
