#!/usr/bin/env python
"""Convert a released (reference) checkpoint into an mmsnn checkpoint.

    python tools/convert_reference.py SRC DST --task det|seg|backbone [--config CONFIG]
                                      [--backbone MetaSDT] [--overwrite] [--allow-partial]

``--task det`` / ``seg``: a whole spiking Mask R-CNN / Semantic FPN trained with the
reference code; ``backbone``: an ImageNet backbone (its classifier is dropped). The keys are
mapped by :func:`mmsnn.models.convert_reference_checkpoint` (the one converter) and checked
against the model of ``--config``: missing, unexpected and wrongly shaped keys are printed by
name. Wrongly shaped keys always fail; missing or unexpected keys fail too (exit status 1,
nothing written) unless ``--allow-partial`` accepts the partial conversion (DST's ``meta``
then lists the missing and unexpected keys). Without ``--config`` the tool picks the reference
config of the checkpoint's size and mixer in ``configs/det/reference`` /
``configs/seg/reference``. DST is written as
``{'state_dict': ..., 'meta': ...}``, ready for ``tools/test.py CONFIG DST`` and for
``load_from`` (fine-tuning).

The source is read with mmsnn's restricted unpickler: tensors, containers, an ``argparse.Namespace``
and numpy scalars load; any other pickled object is refused."""
import os.path as osp
import sys

if __name__ == '__main__':
    # the code lives in mmsnn.cli.convert_reference; from a checkout, use the checkout's mmsnn
    ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if osp.isdir(osp.join(ROOT, 'mmsnn')) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from mmsnn.cli.convert_reference import main
    sys.exit(main())
