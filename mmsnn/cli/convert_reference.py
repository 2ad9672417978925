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
and numpy scalars load; any other pickled object is refused.
"""
import argparse
import os
import os.path as osp
import sys

from mmsnn.configs import configs_dir
from mmsnn.utils.errors import fail  # one ``error: ...`` line, exit status

#: embed dim C0 of the released sizes -> size name in the config file names
_RELEASED_SIZES = {32: 's', 64: 'l'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a released reference checkpoint into an mmsnn checkpoint.')
    parser.add_argument('src', help='the released checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the mmsnn checkpoint')
    parser.add_argument('--task', required=True, choices=['det', 'seg', 'backbone'],
                        help='det: Mask R-CNN, seg: Semantic FPN, backbone: ImageNet weights')
    parser.add_argument('--config', help='the mmsnn config the checkpoint is for (default: '
                        'the reference config of its size and mixer; with --task backbone '
                        'only its backbone is checked)')
    parser.add_argument('--backbone', default='MetaSDT',
                        help='backbone family whose key filter applies (default MetaSDT)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing DST')
    parser.add_argument('--allow-partial', action='store_true',
                        help='write DST even when keys are missing in the checkpoint or '
                        'unexpected by the model (default: exit 1 and write nothing)')
    return parser.parse_args(argv)


def guess_config(state_dict, task):
    """The reference config of the checkpoint's size and mixer (Meta-SDT checkpoints)."""
    prefix = '' if task == 'backbone' else 'backbone.'
    stem = state_dict.get(f'{prefix}downsample1_2.encode_conv.weight')
    size = _RELEASED_SIZES.get(None if stem is None else int(stem.shape[0]))
    if size is None:
        fail(f'cannot tell the model of this checkpoint (no released Meta-SDT size: C0 = '
             f'{None if stem is None else int(stem.shape[0])}); pass --config CONFIG')
    mixer = ('mlpixer' if f'{prefix}ConvBlock1_1.0.fc2.weight' in state_dict else
             'srb' if f'{prefix}ConvBlock1_1.0.fc1.weight' in state_dict else 'conv')
    name = f'sdt_{size}' if mixer == 'conv' else f'sdt_{mixer}_{size}'
    kind = 'seg' if task == 'seg' else 'det'
    return osp.join(configs_dir(), kind, 'reference',
                    name + ('_ade20k.py' if kind == 'seg' else '_coco.py'))


def build_model(config, task):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    from mmengine.registry import MODELS
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None  # only the structure is needed
    if task == 'backbone':
        return MODELS.build(model_cfg.backbone)
    model_cfg.pop('pretrained', None)
    return MODELS.build(model_cfg)


def convert(args):
    import torch

    from mmsnn.models import convert_reference_checkpoint
    from mmsnn.utils.checkpoint_io import state_dict_diff
    try:
        sd = convert_reference_checkpoint(args.src, args.task, args.backbone)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        fail(str(e))
    config = args.config or guess_config(sd, args.task)
    model = build_model(config, args.task)
    missing, unexpected, wrong = state_dict_diff(model.state_dict(), sd)
    wrong = [f'{k}: checkpoint {c} vs model {m}' for k, c, m in wrong]
    print(f'{args.src}: {len(sd)} tensors converted (task {args.task}), checked against '
          f'{osp.relpath(config)}')
    for title, keys in (('wrongly shaped', wrong), ('missing in the checkpoint', missing),
                        ('unexpected in the checkpoint', unexpected)):
        if keys:
            print(f'  {title} ({len(keys)}):')
            for k in keys:
                print(f'    {k}')
    if wrong:
        fail(f'{len(wrong)} tensors do not fit {osp.relpath(config)}; nothing written. '
             'Pass the --config of the checkpoint\'s size, mixer and widths.', code=1)
    if (missing or unexpected) and not args.allow_partial:
        fail(f'{len(missing)} keys missing in the checkpoint, {len(unexpected)} unexpected '
             f'(listed above) for {osp.relpath(config)}; nothing written. Pass the --config '
             'the checkpoint was trained with, or --allow-partial to write the partial '
             'conversion anyway.', code=1)
    if not missing and not unexpected:
        print(f'  all {len(sd)} keys match the model')
    meta = dict(converted_from=osp.abspath(args.src), task=args.task,
                config=osp.abspath(config), missing_keys=missing, unexpected_keys=unexpected)
    tmp = args.dst + '.tmp'
    torch.save({'state_dict': sd, 'meta': meta}, tmp)
    os.replace(tmp, args.dst)
    print(f'wrote {args.dst}; evaluate with: python tools/test.py {osp.relpath(config)} '
          f'{args.dst}')
    return 0


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.src):
        fail(f'{args.src!r} does not exist')
    if osp.abspath(args.src) == osp.abspath(args.dst):
        fail('DST is SRC; write the converted checkpoint to another file')
    if osp.exists(args.dst) and not args.overwrite:
        fail(f'{args.dst!r} exists; pass --overwrite to replace it')
    if args.config and not osp.isfile(args.config):
        fail(f'config {args.config!r} does not exist')
    return convert(args)


if __name__ == '__main__':
    sys.exit(main())
