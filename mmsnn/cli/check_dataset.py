#!/usr/bin/env python
"""Check the data of an mmdet 3.x / mmseg 1.x config before training on it.

    python tools/misc/check_dataset.py CONFIG [--split train val test] [--header-only]
                                       [--cfg-options KEY=VALUE ...]

Every image opens and is complete (decoded in full; ``--header-only``: header and end marker,
as ``tools/train.py --check-data`` does), its size matches the annotation, boxes have a
positive size inside the image, masks are valid polygons / RLE / seg maps of the image's
size, and the annotation file's categories are the config's classes. COCO-format datasets
(det configs) are checked from the annotation file, image / annotation folder datasets (seg
configs) from the file list the dataset builds. Prints one line per problem and exits with
status 1 if there is any (0 if none; 2 for a bad config or missing data folders).
The checks live in ``mmsnn.datasets.checks``.
"""
import argparse
import sys

from mmsnn.datasets.checks import dataset_problems, format_problems
from mmsnn.utils import data_checks
from mmsnn.utils.config import cfg_options_action, load_config
from mmsnn.utils.errors import run_tool

SPLITS = ('train', 'val', 'test')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check that the images and annotations a config names are sound.')
    parser.add_argument('config', help='config file (configs/det/*.py, configs/seg/*.py)')
    parser.add_argument('--split', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='which dataloaders to check (default: all three)')
    parser.add_argument('--header-only', action='store_true',
                        help='read image headers and end markers only, do not decode')
    parser.add_argument(
        '--cfg-options', nargs='+', action=cfg_options_action(), metavar='KEY=VALUE',
        help='override config entries, e.g. data_root=/path/to/dataset/')
    return parser.parse_args(argv)


def check(args):
    cfg = load_config(args.config, args.cfg_options)
    splits = [s for s in args.split if isinstance(cfg.get(f'{s}_dataloader'), dict)]
    data_checks.check_data_paths(cfg, splits)
    problems, checked, unchecked = dataset_problems(cfg, splits, decode=not args.header_only)
    for line in format_problems(problems):
        print(line)
    for dtype in unchecked:
        print(f'note: {dtype} has no file list (get_data_info); its files are not checked',
              file=sys.stderr)
    print(f'{len(problems)} problem(s) in {checked} images of the {"/".join(splits)} data',
          file=sys.stderr)
    return 1 if problems else 0


def main(argv=None):
    return run_tool(check, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
