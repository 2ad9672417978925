"""Command-line arguments that several tools share, defined once.

- ``add_launcher_args`` / ``parse_with_local_rank``: the distributed-launch options of
  ``tools/train.py`` and ``tools/test.py`` (as in mmdet's tools);
- ``image_size``: the argparse type of an ``HxW`` image size (the benchmark and GPU-check tools).
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
