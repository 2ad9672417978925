#!/usr/bin/env python
"""Firing rates, synaptic operations (SOPs) and energy per image of an mmdet / mmseg model.

    python tools/analysis/energy.py CONFIG [CHECKPOINT] --num-images N [--work-dir DIR]
        [--preset fp32|int8] [--demo-data DIR] [--cfg-options KEY=VALUE ...]

Runs the first N images of the config's test dataloader one at a time (batch size 1, so
each image is counted at its own size) and writes, into the work dir (default
``work_dirs/energy/<config name>``): ``energy.txt`` (per-layer table and totals),
``energy.json``, ``energy.csv`` and ``energy_rates.png`` (firing rate per layer). Without
CHECKPOINT the weights are the config's initialisation (random unless it names pretrained
weights): firing rates, and so SOPs and energy, depend on the weights.

``--demo-data DIR`` swaps the config's test set for the generated demo dataset at its
128 px size (detection: ``mmsnn.datasets.demo_coco``, segmentation: ``demo_ade``; written
into DIR if DIR holds none), so any config (e.g. the full-size COCO / ADE20K models) can be
measured without the real datasets.

The convention (what FLOPs, rates, SOPs and E_MAC / E_AC mean) is in
:mod:`mmsnn.analysis.energy`.
"""
import argparse
import os.path as osp
import resource
import sys

from mmsnn.utils import data_checks, paths
from mmsnn.utils.checkpoint_io import (check_checkpoint_file, check_checkpoint_fits,
                                    mmengine_checkpoint_globals)
from mmsnn.utils.config import cfg_options_action, check_config_file, load_config
from mmsnn.utils.errors import MMSNNUserError, run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = {'mmdet': osp.join(ROOT, 'configs', 'det', 'demo', 'sdt_srb_s_demo.py'),
                'mmseg': osp.join(ROOT, 'configs', 'seg', 'demo', 'sdt_demo.py')}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Firing rates, SOPs and energy per image of an mmdet/mmseg model with '
                    'mmsnn modules (table, JSON, CSV and a figure in the work dir).')
    p.add_argument('config', help='mmdet / mmseg config file')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='checkpoint (.pth); without it, the config\'s initial weights')
    p.add_argument('--num-images', type=int, default=8,
                   help='images of the test dataloader to run (default 8)')
    p.add_argument('--work-dir', help='output folder (default work_dirs/energy/<config>)')
    p.add_argument('--preset', default='fp32', choices=['fp32', 'int8'],
                   help='energy per op: fp32 (E_MAC 4.6 pJ, E_AC 0.9 pJ) or int8 (0.23 / 0.03)')
    p.add_argument('--demo-data', metavar='DIR',
                   help='use the generated demo dataset in DIR (written there if missing) '
                        'instead of the config\'s test data')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the initial weights when no checkpoint is given (default 0)')
    p.add_argument('--cfg-options', nargs='+', action=cfg_options_action(),
                   metavar='KEY=VALUE', help='override config entries')
    return p.parse_args(argv)


def _demo_loader(cfg, scope, data_dir, num_images):
    """The demo config's test dataloader on ``data_dir``, generating the data if needed."""
    from mmengine.config import Config

    from mmsnn.datasets import generate_demo_ade, generate_demo_coco, set_data_root
    demo = Config.fromfile(DEMO_CONFIGS[scope])
    count = max(num_images, 8)
    if scope == 'mmdet':
        if not osp.isfile(osp.join(data_dir, 'annotations', 'instances_val2017.json')):
            print(f'writing the demo COCO dataset ({count} val images) to {data_dir}')
            generate_demo_coco(data_dir, num_train=1, num_val=count)
        set_data_root(demo, data_dir.rstrip('/') + '/')
    else:
        if not osp.isdir(osp.join(data_dir, 'images', 'validation')):
            print(f'writing the demo ADE20K-layout dataset ({count} val images) to {data_dir}')
            generate_demo_ade(data_dir, num_train=1, num_val=count)
        demo.test_dataloader.dataset.data_root = data_dir
    cfg.test_dataloader = demo.test_dataloader
    return cfg


def measure(args):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmengine.utils import ProgressBar

    from mmsnn.analysis.energy import count_test_images

    if args.num_images < 1:
        raise MMSNNUserError(
            f'--num-images {args.num_images}: at least one image is needed; pass e.g. '
            '--num-images 8')
    check_config_file(args.config)
    check_checkpoint_file(args.checkpoint)
    if args.work_dir:
        paths.check_writable_dir(args.work_dir)
    if args.demo_data:
        paths.check_writable_dir(args.demo_data, what='--demo-data folder', flag='--demo-data')
    cfg = load_config(args.config, args.cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in DEMO_CONFIGS:
        raise MMSNNUserError(
            f'config {args.config!r} has default_scope={scope!r}; this tool measures mmdet '
            'detectors and mmseg segmentors (default_scope mmdet or mmseg).')
    if args.demo_data:
        cfg = _demo_loader(cfg, scope, args.demo_data, args.num_images)
    elif 'test_dataloader' not in cfg:
        raise MMSNNUserError(f'config {args.config!r} has no test_dataloader; add one or '
                             'pass --demo-data DIR')
    else:
        data_checks.check_data_paths(cfg, ['test'])
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'energy', osp.splitext(osp.basename(args.config))[0])
    paths.check_writable_dir(work_dir)

    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    from mmengine.runner import set_random_seed
    set_random_seed(args.seed)  # a reproducible random initialisation without a checkpoint
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        check_checkpoint_fits(model, args.checkpoint, 'test')
        from mmengine.runner import load_checkpoint
        with mmengine_checkpoint_globals():  # a training checkpoint holds mmengine's objects
            load_checkpoint(model, args.checkpoint, map_location='cpu', logger='silent')
    else:
        model.init_weights()
    model.eval()

    loader_cfg = cfg.test_dataloader.copy()
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False))
    loader_cfg.pop('batch_sampler', None)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    total = min(args.num_images, len(loader.dataset))
    if total < args.num_images:
        print(f'the test set holds {total} images; measuring {total}')

    bar = ProgressBar(total)
    counter = count_test_images(model, loader, total, progress=bar.update)
    print()
    meta = dict(config=osp.abspath(args.config),
                checkpoint=osp.abspath(args.checkpoint) if args.checkpoint else None,
                weights=('checkpoint' if args.checkpoint else
                         'the config\'s initialisation (random unless pretrained)'),
                data=(f'demo dataset {osp.abspath(args.demo_data)}' if args.demo_data
                      else 'the config\'s test_dataloader'))
    report = counter.report(args.preset, meta=meta)
    saved = report.save(work_dir)
    print(report.summary())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f'peak memory {peak:.2f} GiB; files: ' + ', '.join(saved.values()))
    return 0


def main(argv=None):
    return run_tool(measure, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
