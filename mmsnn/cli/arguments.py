"""Command-line arguments that several tools share, defined once.

- ``add_launcher_args`` / ``parse_with_local_rank``: the distributed-launch options of
  ``tools/train.py`` and ``tools/test.py`` (as in mmdet's tools);
- ``image_size``: the argparse type of an ``HxW`` image size (the benchmark and GPU-check tools);
- ``add_keep_freed_memory_arg`` / ``check_keep_freed_memory`` / ``apply_keep_freed_memory``:
  ``--keep-freed-memory`` of ``tools/train.py`` and ``tools/test.py``.
"""
import argparse
import os

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_launcher_args(parser, dist_script):
    """``--launcher`` and the hidden ``--local-rank`` that ``torch.distributed.launch`` passes
    (``dist_script``: the launcher script that passes ``pytorch``, named in the help)."""
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help=f'job launcher ({dist_script} passes pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def parse_with_local_rank(parser, argv=None):
    """Parse, then export ``--local-rank`` as LOCAL_RANK unless the launcher set it (torchrun
    sets LOCAL_RANK itself; ``torch.distributed.launch`` only passes the flag), because
    mmengine's distributed set-up reads the variable."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def image_size(text):
    """argparse type: ``'800x1344'`` -> ``(800, 1344)`` (height x width, in pixels)."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'size {text!r} is not HEIGHTxWIDTH in pixels, e.g. 800x1344') from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f'size {text!r} must be positive, e.g. 800x1344')
    return h, w


def check_meta_sdt_archs(archs):
    """``--archs``: every one a MetaSDT size (``ARCH_SETTINGS``), else a user error naming them."""
    from mmsnn.models.backbones.meta_sdt import ARCH_SETTINGS
    unknown = [a for a in archs if a not in ARCH_SETTINGS]
    if unknown:
        from mmsnn.utils.errors import MMSNNUserError
        raise MMSNNUserError(f'unknown --archs {unknown}: choose from {sorted(ARCH_SETTINGS)}')


def add_keep_freed_memory_arg(parser, faster):
    """``--keep-freed-memory`` (``faster``: what it speeds up, for the help)."""
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='CPU only: make this process reuse the memory it frees instead '
                        'of returning it to the OS (a process-wide glibc setting, '
                        f'mmsnn.deploy.keep_freed_memory): {faster}, but the process keeps '
                        'its peak memory until it exits')


def check_keep_freed_memory(flag, run='inference'):
    """``--keep-freed-memory`` is a setting of this process's CPU heap: refused where the model
    would run on a GPU, where it would only hold host memory back."""
    import torch
    if flag and torch.cuda.is_available():
        from mmsnn.utils.errors import MMSNNUserError
        raise MMSNNUserError(f'--keep-freed-memory concerns CPU {run}, but this run uses '
                             'the GPU; drop the flag (or run on the CPU with '
                             'CUDA_VISIBLE_DEVICES= to use it)')


def apply_keep_freed_memory(flag):
    """With ``flag``: :func:`mmsnn.deploy.keep_freed_memory`, and one line saying what it did."""
    if flag:
        from mmsnn.deploy import keep_freed_memory
        print('--keep-freed-memory: ' + ('this process keeps freed memory for reuse' if
              keep_freed_memory() else 'allocator unchanged (the C library is not glibc)'))
