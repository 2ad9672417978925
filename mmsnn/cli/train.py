#!/usr/bin/env python
"""Train a detector (mmdet 3.x config) or segmentor (mmseg 1.x config) with mmsnn's modules.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
                          [--overwrite] [--check-data] [--keep-freed-memory]
    tools/dist_train.sh CONFIG NPROC [same options]        # several processes (torchrun)

The config's ``default_scope`` ('mmdet' or 'mmseg') decides which toolbox runs it; mmsnn is
imported first, so every mmsnn module is registered in both. Problems with the input (missing
config, data, checkpoint; unknown module type; a work dir holding earlier checkpoints) stop
the run before any work with one ``error: ...`` line and exit status 2. Bad data found later
(a missing, corrupt or cut-short file) stops the run with one line naming the file, or is
skipped with a warning (``--cfg-options train_dataloader.dataset.skip_bad_samples=True``); a
loss that turns NaN/inf stops it with one line, before a checkpoint is written.
"""
import argparse
import os
import os.path as osp
import sys

from mmsnn.cli.arguments import (add_keep_freed_memory_arg, add_launcher_args,
                                 apply_keep_freed_memory, check_keep_freed_memory,
                                 parse_with_local_rank)
from mmsnn.datasets import checks as dataset_checks
from mmsnn.datasets import guard_train_dataset
from mmsnn.engine.compile import add_compile_hooks
from mmsnn.engine.hooks import add_nonfinite_loss_hook, add_st_erf_hook, use_atomic_checkpoints
from mmsnn.utils import data_checks, paths, resume, runtime
from mmsnn.utils.checkpoint_io import (check_checkpoint_file, check_checkpoint_fits,
                                    mmengine_checkpoint_globals)
from mmsnn.utils.config import (cfg_options_action, check_config_file, check_config_sections,
                                check_dataloader_options, load_config)
from mmsnn.utils.errors import MMSNNUserError, run_tool


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train an mmdet/mmseg config with mmsnn modules.',
        epilog='Synchronised BatchNorm across GPUs: add sync_bn = "torch" to the config (or '
        '--cfg-options sync_bn=torch); mmengine converts the BatchNorm layers when it wraps '
        'the model for a distributed run. Without CUDA, distributed runs use gloo and '
        '--amp uses bf16 autocast.')
    parser.add_argument('config', help='train config file (configs/det/*.py, configs/seg/*.py)')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto', metavar='CKPT',
        help='continue training: from CKPT if given, else from the latest checkpoint in the '
        'work dir (its last_checkpoint file)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 with dynamic loss scaling on CUDA, bf16 '
                        'autocast without loss scaling on CPU')
    parser.add_argument('--overwrite', action='store_true',
                        help='allow training into a work dir that holds checkpoints of an '
                        'earlier run (they may be replaced)')
    parser.add_argument('--check-data', action='store_true',
                        help='before training, check every image of the train (and val) data '
                        'against its annotation (file opens and is complete, sizes, boxes, '
                        'masks, classes; header reads only) and stop with the list of problems')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the total batch size (needs '
                        'auto_scale_lr in the config)')
    add_keep_freed_memory_arg(parser, 'faster train steps on large images '
                              '(docs/en/benchmarks.md)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=cfg_options_action(), metavar='KEY=VALUE',
        help='override config entries, e.g. train_dataloader.batch_size=2 '
        'model.backbone.arch=t "optim_wrapper.optimizer.lr=1e-4"; lists as key="[a,b]"')
    add_launcher_args(parser, 'dist_train.sh')
    return parse_with_local_rank(parser, argv)


def check_dataset_content(cfg, loaders, config):
    """--check-data: the cheap (header-read) dataset checks; their problems as one error."""
    problems, checked, _ = dataset_checks.dataset_problems(cfg, loaders, decode=False)
    if problems:
        lines = '\n'.join(f'    {line}' for line in
                          dataset_checks.format_problems(problems, limit=20))
        raise MMSNNUserError(
            f'--check-data found {len(problems)} problem(s) in the {"/".join(loaders)} data '
            f'({checked} images checked):\n{lines}\n  fix: repair or remove those files or '
            f'annotations (python tools/misc/check_dataset.py {config} lists every one and '
            'also decodes the images), or skip bad samples while training: --cfg-options '
            'train_dataloader.dataset.skip_bad_samples=True')
    print(f'--check-data: {checked} images checked, no problem found', file=sys.stderr)


def train(args):
    check_config_file(args.config)
    check_keep_freed_memory(args.keep_freed_memory, 'training')
    if args.resume not in (None, 'auto'):
        check_checkpoint_file(args.resume, '--resume checkpoint')
    cfg = load_config(args.config, args.cfg_options)
    # `st_erf = dict(enable=True, ...)` (or --cfg-options st_erf.enable=True) -> STERFHook
    add_st_erf_hook(cfg)
    use_atomic_checkpoints(cfg)  # a killed save leaves the earlier checkpoints intact
    add_nonfinite_loss_hook(cfg)  # a NaN/inf loss stops the run before it is saved
    add_compile_hooks(cfg)  # compile=True: the optimizer step stays eager
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    work_dir = cfg.work_dir

    check_config_sections(cfg, 'train')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise MMSNNUserError(
                '--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in the config.')
        cfg.auto_scale_lr.enable = True

    # --resume: an explicit checkpoint, or the latest one in the work dir
    auto_resume = False  # only then may an unreadable checkpoint be replaced by another
    if args.resume not in (None, 'auto'):
        cfg.resume, cfg.load_from = True, args.resume
    elif args.resume == 'auto' or (cfg.get('resume') and not cfg.get('load_from')):
        latest = resume.resolve_auto_resume(work_dir)
        if latest is None:
            print(f'note: --resume found no checkpoint in {work_dir!r}; starting a new run',
                  file=sys.stderr)
            cfg.resume = False
        else:
            cfg.resume, cfg.load_from, auto_resume = True, latest, True
    elif cfg.get('resume') and cfg.get('load_from'):
        check_checkpoint_file(cfg.load_from, 'resume checkpoint (load_from)')
    else:
        cfg.resume = False
        if cfg.get('load_from'):
            check_checkpoint_file(cfg.load_from, 'load_from checkpoint')

    runtime.configure_runtime(cfg, args.launcher, amp=args.amp)
    loaders = ['train']
    if all(cfg.get(k) for k in ('val_dataloader', 'val_cfg', 'val_evaluator')):
        loaders.append('val')  # validation runs during training
    check_dataloader_options(cfg, loaders)
    data_checks.check_data_paths(cfg, loaders)
    data_checks.check_num_classes(cfg, loaders)
    if args.check_data:
        check_dataset_content(cfg, loaders, args.config)
    guard_train_dataset(cfg)  # a bad sample: one line naming it (or skipped), no traceback
    paths.check_writable_dir(work_dir)
    paths.check_work_dir_keeps_config(work_dir, args.config)
    resume.check_no_checkpoints_overwritten(work_dir, resume=cfg.resume,
                                            overwrite=args.overwrite)

    checkpoint = None
    if cfg.resume and cfg.get('load_from') and osp.isfile(cfg.load_from):
        # an unreadable checkpoint (a kill while saving): with an automatic --resume, fall
        # back to an older one that holds the whole training state; a named one must be read
        quiet = os.environ.get('RANK', '0') != '0'  # every rank checks; rank 0 says so
        saver = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
        cfg.load_from, checkpoint = resume.readable_resume_checkpoint(
            cfg.load_from, work_dir, log=(lambda text: None) if quiet else None,
            fallback=auto_resume, schedulers=bool(cfg.get('param_scheduler'))
            and saver.get('save_param_scheduler', True))

    runtime.start_distributed(cfg)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    # mmengine only warns about keys that do not fit; a resumed or loaded model must fit
    check_checkpoint_fits(runner.model, cfg.get('load_from'),
                          'resume' if cfg.resume else 'load_from', checkpoint=checkpoint)
    del checkpoint
    apply_keep_freed_memory(args.keep_freed_memory)  # after the runner has built everything
    with mmengine_checkpoint_globals():  # mmengine's torch.load of its own checkpoints
        runner.train()
    runtime.stop_distributed()
    return 0


def main(argv=None):
    return run_tool(train, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
