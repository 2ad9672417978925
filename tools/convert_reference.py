#!/usr/bin/env python
"""Convert a released (reference) checkpoint into an mmsnn checkpoint.

Usage, options and behaviour: ``mmsnn/cli/convert_reference.py`` (``--help``).
"""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.convert_reference; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.convert_reference import main
    sys.exit(main())
