#!/usr/bin/env python
"""Evaluate a checkpoint on the test set of an mmdet 3.x / mmseg 1.x config with mmsnn modules.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--overwrite]
                         [--show-dir DIR] [--show] [--energy] [--fuse-conv-bn]
                         [--keep-freed-memory]
                         [--cfg-options KEY=VALUE ...]
                         [--launcher none|pytorch|slurm|mpi]
    tools/dist_test.sh CONFIG CHECKPOINT NPROC [same options]

Prints the metrics (bbox/segm mAP for detection, mIoU/aAcc for segmentation) and saves them
as JSON in ``{work_dir}/{timestamp}/metrics.json`` (kept per run) and
``{work_dir}/metrics.json`` (the latest run). ``--out`` dumps the predictions as a pickle with
the toolbox's own dump (mmdet's ``DumpDetResults``: masks RLE-encoded; mmengine's
``DumpResults`` for mmseg), ``--show-dir`` draws the predictions into pictures, ``--energy``
adds the energy report (``tools/analysis/energy.py``) of the evaluated images,
``--fuse-conv-bn`` runs the inference fast path (``mmsnn.deploy.convert_for_inference``: BN folded
into the convs, quantiser in place, on the CPU 3x3 convs by Winograd; faster, float64 spikes
identical, float32 spikes may differ where an input lies next to a quantiser level),
``--keep-freed-memory`` makes this CPU process reuse the memory it frees
(``mmsnn.deploy.keep_freed_memory``: faster at COCO size, but the process keeps its peak
memory; not for GPU runs). A detector that predicted
nothing above its score threshold is reported as such, with zero metrics."""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.test; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.test import main
    sys.exit(main())
