#!/usr/bin/env python
"""Evaluate a checkpoint on the test set of an mmdet 3.x / mmseg 1.x config with mmsnn modules.

Usage, options and behaviour: ``mmsnn/cli/test.py`` (``--help``).
"""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.test; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.test import main
    sys.exit(main())
