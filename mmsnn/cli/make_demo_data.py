#!/usr/bin/env python
"""Write the synthetic demo datasets of mmsnn (the generators live in ``mmsnn.datasets``).

    python tools/misc/make_demo_data.py coco [--out data/demo_coco] [--num-train 200]
        [--num-val 50] [--size H W] [--num-classes 3] [--max-objects 3] [--seed 0]
    python tools/misc/make_demo_data.py ade [--out data/demo_ade] [--num-train 160]
        [--num-val 40] [--size H [W]] [--num-classes 5] [--seed 0]

``python -m mmsnn.datasets.demo_coco ...`` and ``python -m mmsnn.datasets.demo_ade ...`` run
this script with ``coco`` / ``ade`` put in front of their arguments.
"""
import argparse
import json
import sys

from mmsnn.datasets.demo_ade import DEFAULT_NUM_CLASSES, DEMO_CLASSES, generate_demo_ade
from mmsnn.datasets.demo_coco import generate_demo_coco


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write a synthetic mmsnn demo dataset.')
    kinds = parser.add_subparsers(dest='kind', required=True)
    coco = kinds.add_parser('coco', description='Generate the mmsnn demo COCO dataset.')
    coco.add_argument('--out', default='data/demo_coco', help='output folder')
    coco.add_argument('--num-train', type=int, default=200)
    coco.add_argument('--num-val', type=int, default=50)
    coco.add_argument('--size', type=int, nargs=2, default=(128, 128), metavar=('H', 'W'))
    coco.add_argument('--num-classes', type=int, default=3)
    coco.add_argument('--max-objects', type=int, default=3)
    coco.add_argument('--seed', type=int, default=0)
    ade = kinds.add_parser('ade', description='Write the synthetic ADE20K-layout demo dataset.')
    ade.add_argument('--out', default='data/demo_ade', help='output folder')
    ade.add_argument('--num-train', type=int, default=160)
    ade.add_argument('--num-val', type=int, default=40)
    ade.add_argument('--size', type=int, nargs='+', default=[128, 128],
                     help='image size: H W (or one number for square images)')
    ade.add_argument('--num-classes', type=int, default=DEFAULT_NUM_CLASSES,
                     help=f'K classes (labels 1..K), 2..{len(DEMO_CLASSES)}; the demo configs '
                          f'expect {DEFAULT_NUM_CLASSES}')
    ade.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.kind == 'coco':
        files = generate_demo_coco(args.out, args.num_train, args.num_val, tuple(args.size),
                                   args.num_classes, args.seed, args.max_objects)
        for split, f in files.items():
            with open(f) as fh:
                d = json.load(fh)
            print(f'{split}: {len(d["images"])} images, {len(d["annotations"])} objects -> {f}')
    else:
        size = tuple(args.size) if len(args.size) == 2 else (args.size[0], args.size[0])
        generate_demo_ade(args.out, args.num_train, args.num_val, size, args.num_classes,
                          args.seed)
        print(f'wrote {args.num_train} training and {args.num_val} validation images '
              f'({size[0]}x{size[1]}, classes {DEMO_CLASSES[:args.num_classes]}) to {args.out}')
    return 0


def deprecated_kind_main(kind, module):
    """The old ``main`` of ``mmsnn.datasets.demo_{kind}`` (``module``): warns once, then runs
    :func:`main` with ``kind`` in front of the arguments."""
    from mmsnn.utils.deprecation import warn_moved
    warn_moved(f'{module}.main', f"mmsnn.cli.make_demo_data.main(['{kind}', ...])",
               stacklevel=4, same_object=False)  # 4: the caller of the module __getattr__
    return lambda argv=None: main([kind, *(sys.argv[1:] if argv is None else argv)])


if __name__ == '__main__':
    sys.exit(main())

