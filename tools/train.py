#!/usr/bin/env python
"""Train a detector (mmdet 3.x config) or segmentor (mmseg 1.x config) with mmsnn's modules.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
                          [--overwrite] [--check-data]
    tools/dist_train.sh CONFIG NPROC [same options]        # several processes (torchrun)

The config's ``default_scope`` ('mmdet' or 'mmseg') decides which toolbox runs it; mmsnn is
imported first, so every mmsnn module is registered in both. Problems with the input (missing
config, data, checkpoint; unknown module type; a work dir holding earlier checkpoints) stop
the run before any work with one ``error: ...`` line and exit status 2. Bad data found later
(a missing, corrupt or cut-short file) stops the run with one line naming the file, or is
skipped with a warning (``--cfg-options train_dataloader.dataset.skip_bad_samples=True``); a
loss that turns NaN/inf stops it with one line, before a checkpoint is written."""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.train; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.train import main
    sys.exit(main())
