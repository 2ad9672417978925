#!/usr/bin/env python
"""Store reference golden files (``torch.save`` trees) compactly and losslessly for the tests.

    python tools/misc/pack_goldens.py ../shared/golden/meta_sdt_parity.pt --out tests/data/goldens

Each ``NAME.pt`` becomes ``OUT/NAME.golden.xz`` (format: ``mmsnn.testing.goldens``), and is
read back and compared with the source, value for value and dtype for dtype, before the
command reports success.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmsnn.testing.goldens import SUFFIX, load_golden, pack_golden


def same(a, b):
    if torch.is_tensor(a):
        return (torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and (a == b or a != a and b != b)  # NaN equals NaN here


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('sources', nargs='+', help='golden .pt files')
    parser.add_argument('--out', required=True, help='output folder')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for src in args.sources:
        tree = torch.load(src, map_location='cpu', weights_only=False)
        dst = osp.join(args.out, osp.basename(src)[:-len('.pt')] + SUFFIX)
        pack_golden(tree, dst)
        if not same(tree, load_golden(dst)):
            print(f'error: {dst} does not read back as {src}', file=sys.stderr)
            return 1
        print(f'{src} ({osp.getsize(src)} bytes) -> {dst} ({osp.getsize(dst)} bytes), '
              'read back identical')
    return 0


if __name__ == '__main__':
    sys.exit(main())
