#!/usr/bin/env python
"""Write the synthetic demo datasets of mmsnn (the generators live in ``mmsnn.datasets``).

Usage, options and behaviour: ``mmsnn/cli/make_demo_data.py`` (``--help``).
"""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.make_demo_data; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.make_demo_data import main
    sys.exit(main())
