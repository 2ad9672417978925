#!/usr/bin/env python
"""Train and test a config for N seeds under both CPU kernel families; min / median / max.

    python tools/analysis/seed_sweep.py configs/det/demo/sdt_srb_s_demo.py \\
        --seeds 0 1 2 3 4 --families native avx2 --work-dir work_dirs/seed_sweep_det \\
        --train-options data_root=data/demo_coco/ --test-options data_root=data/demo_coco/

Each (family, seed) run trains with ``randomness.seed=SEED`` in its own process ('avx2' sets
ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2: the kernels an older x86 CPU runs), then
tools/test.py evaluates its last checkpoint. Runs go to ``WORK_DIR/{family}_seed{seed}/``; a
run with a ``result.json`` is reused, so an interrupted sweep continues. Prints every run
(with the kernel level torch reported) and min / median / max of each metric; ``--out``
writes them as JSON.
"""
import argparse
import json
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmsnn.analysis.seed_sweep import (KERNEL_FAMILIES, format_sweep, run_one,  # noqa: E402
                                       summarise)
from mmsnn.utils.errors import MMSNNUserError, run_tool  # noqa: E402

DEFAULT_KEYS = {'det': ['coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50',
                        'coco/segm_mAP_50'],
                'seg': ['mIoU', 'aAcc']}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    p.add_argument('--families', nargs='+', default=list(KERNEL_FAMILIES),
                   help=f'kernel families: {", ".join(KERNEL_FAMILIES)}')
    p.add_argument('--work-dir', required=True, help='one sub-folder per run')
    p.add_argument('--train-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='--cfg-options for tools/train.py (the seed is added)')
    p.add_argument('--test-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='--cfg-options for tools/test.py')
    p.add_argument('--keys', nargs='+', help='metrics to summarise (default: box/mask mAP '
                   'for mmdet configs, mIoU/aAcc for mmseg configs)')
    p.add_argument('--repo', default=REPO,
                   help='checkout whose tools/ and mmsnn train and test (default: this one); '
                   'e.g. a git worktree of an older commit, for a controlled comparison')
    p.add_argument('--out', help='JSON file for the runs and the summary')
    return p.parse_args(argv)


def main(args):
    if not osp.isfile(args.config):
        raise MMSNNUserError(f'config {args.config!r} does not exist; pass a path such as '
                             'configs/det/demo/sdt_srb_s_demo.py')
    unknown = [f for f in args.families if f not in KERNEL_FAMILIES]
    if unknown:
        raise MMSNNUserError(f'unknown kernel family {unknown[0]!r} in --families; choose from '
                             f'{", ".join(KERNEL_FAMILIES)}')
    if args.out and osp.exists(args.out):
        raise MMSNNUserError(f'--out {args.out!r} exists; pass a new file name (the sweep does '
                             'not overwrite earlier results)')
    if not osp.isfile(osp.join(args.repo, 'tools', 'train.py')):
        raise MMSNNUserError(f'--repo {args.repo!r} has no tools/train.py; pass an mmsnn '
                             'checkout (e.g. `git worktree add ../old COMMIT`)')
    keys = args.keys or DEFAULT_KEYS['seg' if '/seg/' in osp.abspath(args.config) else 'det']
    config = osp.abspath(args.config)
    results = []
    for family in args.families:
        for seed in args.seeds:
            r = run_one(config, seed, family, osp.abspath(args.work_dir),
                        osp.abspath(args.repo), train_options=args.train_options,
                        test_options=args.test_options)
            print(f'{family} seed {seed} ({r["capability"]}): ' + ', '.join(
                f'{k} {r["metrics"].get(k, float("nan")):.3f}' for k in keys), flush=True)
            results.append(r)
    print(format_sweep(results, keys))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, runs=results, summary=summarise(results, keys)),
                      f, indent=1)


if __name__ == '__main__':
    run_tool(main, parse_args())
