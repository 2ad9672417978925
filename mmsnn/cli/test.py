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
nothing above its score threshold is reported as such, with zero metrics.
"""
import argparse
import os
import os.path as osp
import sys

from mmsnn.analysis.test_metrics import (PredictionCounter, dump_metric, save_metrics,
                                         zero_detection_metrics)
from mmsnn.cli.arguments import (add_keep_freed_memory_arg, add_launcher_args,
                                 apply_keep_freed_memory, check_keep_freed_memory,
                                 parse_with_local_rank)
from mmsnn.utils import data_checks, paths, runtime
from mmsnn.utils.checkpoint_io import (check_checkpoint_file, check_checkpoint_fits,
                                    mmengine_checkpoint_globals)
from mmsnn.utils.config import (cfg_options_action, check_config_file, check_config_sections,
                                check_dataloader_options, enable_visualization, load_config)
from mmsnn.utils.errors import MMSNNUserError, run_tool


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (evaluate) a checkpoint with an mmdet/mmseg config and mmsnn '
        'modules.')
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file (.pth) written by tools/train.py')
    parser.add_argument('--work-dir', help='folder for logs and metrics.json '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--out', metavar='FILE.pkl',
                        help='dump the predictions to this pickle file')
    parser.add_argument('--overwrite', action='store_true',
                        help='allow --out to replace an existing file')
    parser.add_argument('--show-dir', metavar='DIR',
                        help='draw the predictions and save the pictures in DIR')
    parser.add_argument('--show', action='store_true',
                        help='show the pictures in a window (needs a display)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each picture is shown with --show')
    parser.add_argument('--energy', action='store_true',
                        help='also report firing rates, SOPs and energy per image '
                        '(mmsnn.analysis.energy) into {work_dir}/energy/; the test set then '
                        'runs with batch size 1, so each image is counted at its own size')
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='inference fast path (mmsnn.deploy.convert_for_inference): fold '
                        'BatchNorm into the convs, run the quantiser in place, 3x3 convs by '
                        'Winograd on the CPU; faster, the same spikes in float64, in float32 '
                        'a spike next to a quantiser level may move')
    parser.add_argument('--compile', nargs='?', const='inductor', metavar='BACKEND',
                        help='torch.compile the backbone and neck (BACKEND, default inductor; '
                        'the heads stay eager): the first batch pays the compilation, minutes '
                        'on a CPU. With --fuse-conv-bn the fast path rewrites only the eager '
                        'heads: the compiler fuses the backbone and neck better itself')
    add_keep_freed_memory_arg(parser, 'faster on large images')
    parser.add_argument(
        '--cfg-options', nargs='+', action=cfg_options_action(), metavar='KEY=VALUE',
        help='override config entries, e.g. test_dataloader.batch_size=1')
    add_launcher_args(parser, 'dist_test.sh')
    return parse_with_local_rank(parser, argv)


def check_compile_flags(args):
    """``--compile`` with ``--energy``: refused (the energy count hooks every neuron, and a
    compiled backbone runs its neurons inside one graph)."""
    if args.compile and args.energy:
        raise MMSNNUserError('--compile and --energy together: the energy report counts every '
                             'neuron of the eager model; drop --compile for the energy run')


def test(args):
    check_keep_freed_memory(args.keep_freed_memory)
    check_compile_flags(args)
    check_config_file(args.config)
    check_checkpoint_file(args.checkpoint)
    if args.out:
        paths.check_out_file(args.out, overwrite=args.overwrite)
    cfg = load_config(args.config, args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False

    check_config_sections(cfg, 'test')
    if args.energy:  # one image per batch: counts without the batch's padding
        cfg.test_dataloader.batch_size = 1
    if args.show or args.show_dir:
        enable_visualization(cfg, osp.abspath(args.show_dir) if args.show_dir else None,
                             args.show)
        if args.show:
            cfg.default_hooks.visualization['wait_time'] = args.wait_time
    runtime.configure_runtime(cfg, args.launcher)
    check_dataloader_options(cfg, ['test'])
    data_checks.check_data_paths(cfg, ['test'])
    data_checks.check_num_classes(cfg, ['test'])
    paths.check_writable_dir(cfg.work_dir)
    paths.check_work_dir_keeps_config(cfg.work_dir, args.config)
    if args.show_dir:
        paths.check_writable_dir(args.show_dir, what='--show-dir', flag='--show-dir')

    runtime.start_distributed(cfg)
    from mmengine.dist import is_main_process
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_checkpoint_fits(runner.model, args.checkpoint, 'test')
    if args.out:
        runner.test_evaluator.metrics.append(dump_metric(cfg, args.out))
    counter = None
    if cfg.get('default_scope') == 'mmdet':
        counter = PredictionCounter()
        runner.test_evaluator.metrics.append(counter)
    if args.energy:
        from mmsnn.engine.hooks import EnergyHook
        runner.register_hook(EnergyHook(
            out_dir=osp.join(cfg.work_dir, 'energy'),
            meta=dict(config=osp.abspath(args.config), checkpoint=args.checkpoint)))
    with mmengine_checkpoint_globals():  # mmengine's torch.load of its own checkpoints
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if args.fuse_conv_bn:
            from mmsnn.deploy import convert_for_inference
            from mmsnn.engine.compile import compiled_parts
            runner.load_or_resume()  # folding needs the trained BN statistics; test() won't reload
            # with --compile the parts to be compiled keep their structure: the compiler fuses
            # BN, quantiser and residual sums itself, and the hand-written forms made the
            # compiled graph slower (docs/en/benchmarks.md); only their convolution kernel is
            # chosen (Winograd), and the eager heads get every rewrite
            leave = tuple(compiled_parts(model)) if args.compile else ()
            model = convert_for_inference(model, leave=leave)
            print(f'--fuse-conv-bn: inference fast path on'
                  + (f' (in {" and ".join(leave)}, to be compiled, only the Winograd convs)'
                     if leave else '')
                  + f', {len(model.folded_bn)} BatchNorm layers folded into their convs, '
                  f'{len(model.winograd_convs)} 3x3 convs by Winograd (float32 CPU)'
                  + (f', {len(model.count_convs)} convs fed by spikes as exact int8 products '
                     'of the spike counts (AMX CPU)' if model.count_convs else ''))
        if args.compile:
            from mmsnn.engine.compile import compile_for_inference
            if not args.fuse_conv_bn:
                runner.load_or_resume()  # the count convs pack the trained weights
            before = len(getattr(model, 'count_convs', []))
            parts = compile_for_inference(model, backend=args.compile)
            added = len(model.count_convs) - before
            counted = (f'; in them {added} convs fed by spikes as exact int8 products of the '
                       'spike counts (AMX CPU)') if added else ''
            print(f'--compile: {" and ".join(parts)} compiled with torch.compile '
                  f'(backend {args.compile}); the first batch compiles them{counted}')
        apply_keep_freed_memory(args.keep_freed_memory)
        metrics = runner.test()
    main_process = is_main_process()  # asked before the process group closes
    runtime.stop_distributed()

    if main_process:
        if counter is not None and counter.images and not counter.instances:
            metrics = zero_detection_metrics(cfg, metrics, counter.images)
        metric_files = [osp.join(runner.log_dir, 'metrics.json'),
                        osp.join(cfg.work_dir, 'metrics.json')]
        save_metrics(metrics, metric_files, args.config, args.checkpoint)
        print('metrics:')
        for key, value in (metrics or {}).items():
            print(f'  {key}: {value}')
        print(f'metrics saved to {metric_files[1]} (and {metric_files[0]})')
        if args.out:
            print(f'predictions dumped to {args.out}')
        if args.show_dir:
            where = args.show_dir
            if cfg.get('default_scope') == 'mmseg':  # mmseg's visualizer saves under vis_data
                where = osp.join(args.show_dir, 'vis_data', 'vis_image')
            print(f'pictures of the predictions in {where}')
    return 0


def main(argv=None):
    return run_tool(test, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
