#!/usr/bin/env python
"""Write the synthetic demo datasets of mmsnn (the generators live in ``mmsnn.datasets``).

    python tools/misc/make_demo_data.py coco [--out data/demo_coco] [--num-train 200]
        [--num-val 50] [--size H W] [--num-classes 3] [--max-objects 3] [--seed 0]
    python tools/misc/make_demo_data.py ade [--out data/demo_ade] [--num-train 160]
        [--num-val 40] [--size H [W]] [--num-classes 5] [--seed 0]

``python -m mmsnn.datasets.demo_coco ...`` and ``python -m mmsnn.datasets.demo_ade ...`` run
this script with ``coco`` / ``ade`` put in front of their arguments.
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
