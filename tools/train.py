#!/usr/bin/env python
"""Train a detector (mmdet 3.x config) or segmentor (mmseg 1.x config) with mmsnn's modules.

Usage, options and behaviour: ``mmsnn/cli/train.py`` (``--help``).
"""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.train; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.train import main
    sys.exit(main())
