#!/usr/bin/env python
"""Check the data of an mmdet 3.x / mmseg 1.x config before training on it.

Usage, options and behaviour: ``mmsnn/cli/check_dataset.py`` (``--help``).
"""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.check_dataset; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.check_dataset import main
    sys.exit(main())
