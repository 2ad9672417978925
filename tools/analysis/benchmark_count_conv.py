#!/usr/bin/env python
"""Convs fed by spikes: float32 against int8 count convolutions, per shape of a Meta-SDT.

    python tools/analysis/benchmark_count_conv.py --archs s --size 800x1216

``tools/test.py --compile`` computes the convs that neurons feed as exact int8 products of
the spike counts on a CPU with AMX (``mmsnn/ops/count_conv.py``), for the kinds of conv where
that paid when measured here. This table shows, per conv shape of the backbone, both kernels
on the same counts (alternating, medians), the speed-up, whether the rule
(``count_conv_applies``) takes the shape, and the CPU: run it on a new CPU to see whether the
rule holds there. Depthwise convs have no count form and are not listed.
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
    p.add_argument('--repeats', type=int, default=5, help='timed calls of each kernel')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.repeats < 1:
        raise MMSNNUserError('--repeats must be at least 1')
    import torch

    from mmsnn.ops.count_conv import count_conv_supported
    check_meta_sdt_archs(args.archs)
    if not count_conv_supported():
        raise MMSNNUserError('this torch build has no oneDNN int8 convolution '
                             '(torch.ops.onednn.qconv_prepack): nothing to compare')
    from mmsnn.analysis.benchmark.count_conv import spike_fed_conv_shapes, time_count_conv
    from mmsnn.utils.machine import cpu_description
    print(f'CPU {cpu_description()}, {torch.get_num_threads()} thread(s), torch '
          f'{torch.__version__}; image {args.size[0]}x{args.size[1]}; medians of '
          f'{args.repeats} calls each, alternating')
    print(f"{'arch':5} {'weight':>16} {'input':>18} {'convs':>5} {'float32 s':>9} "
          f"{'count s':>9} {'speed-up':>8} {'rel diff':>9}  model uses")
    total = {'float32_s': 0.0, 'count_s': 0.0, 'model_s': 0.0}
    for arch in args.archs:
        rows = {}
        for name, conv, shape, norm in spike_fed_conv_shapes(arch, args.size):
            if conv.groups != 1:  # depthwise: no count form (limbs are stacked per output)
                continue
            key = (tuple(conv.weight.shape), shape, conv.stride, norm)
            if key in rows:
                rows[key][0] += 1
            else:
                rows[key] = [1, conv, shape, norm]
        for (wshape, shape, _, _), (n, conv, _, norm) in rows.items():
            r = time_count_conv(conv, shape, norm, args.repeats)
            total['float32_s'] += n * r['float32_s']
            total['count_s'] += n * r['count_s']
            total['model_s'] += n * r['count_s' if r['applies'] else 'float32_s']
            print(f"{arch:5} {'x'.join(map(str, wshape)):>16} {'x'.join(map(str, shape)):>18} "
                  f"{n:5d} {r['float32_s']:9.4f} {r['count_s']:9.4f} "
                  f"{r['float32_s'] / r['count_s']:7.2f}x {r['rel_diff']:9.1e}  "
                  f"{'count' if r['applies'] else 'float32'}")
    if total['model_s']:
        print(f"all: float32 {total['float32_s']:.4f} s, count {total['count_s']:.4f} s, the "
              f"rule's choice {total['model_s']:.4f} s "
              f"({total['float32_s'] / total['model_s']:.2f}x float32's)")
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
