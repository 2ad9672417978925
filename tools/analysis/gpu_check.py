#!/usr/bin/env python
"""GPU readiness check: compiled vs eager Mask R-CNN (fp32, AMP), I-LIF T=4, peak memory and
spike agreement with CPU float64, as one table (``mmsnn.analysis.gpu_check``).

    python tools/analysis/gpu_check.py                    # on a CUDA machine, ~10 minutes
    python tools/analysis/gpu_check.py --size 64x96       # smaller detector input

Without CUDA the GPU rows read "skipped (no CUDA device)" and the CPU parts still run.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmsnn.analysis.gpu_check import SIZE, format_rows, run_check  # noqa: E402
from mmsnn.cli.arguments import image_size  # noqa: E402
from mmsnn.utils.errors import MMSNNUserError, run_tool  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=image_size, default=SIZE, help='detector input, HxW')
    p.add_argument('--spike-size', type=image_size, default=(64, 96),
                   help='backbone input of the spike agreement, HxW')
    p.add_argument('--calls', type=int, default=2, help='timed calls per row after a warm-up '
                   '(0: each row runs once, its first call: a smoke run)')
    args = p.parse_args(argv)
    if args.calls < 0:
        raise MMSNNUserError(f'--calls {args.calls}: give 0 (each row once) or more timed calls')
    from mmsnn.utils.machine import cpu_description
    rows = run_check(args.size, args.calls, args.spike_size, log=lambda *a: None)
    print(f'GPU readiness check (CPU: {cpu_description()})')
    print(format_rows(rows))
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
