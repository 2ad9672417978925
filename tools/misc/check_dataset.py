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
The checks live in ``mmsnn.datasets.checks``."""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.check_dataset; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.check_dataset import main
    sys.exit(main())
