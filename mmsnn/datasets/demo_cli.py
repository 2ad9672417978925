"""``python -m mmsnn.datasets.demo_coco`` / ``demo_ade``: the documented commands, kept; they
run ``tools/misc/make_demo_data.py`` (where the command line is parsed) from the checkout or
from an installed wheel's ``mmsnn/.mim/tools``."""
import os.path as osp
import runpy
import sys


def run_demo_script(kind, argv=None):
    """Run ``tools/misc/make_demo_data.py KIND ARGV...`` (``argv``: default ``sys.argv[1:]``)."""
    from ..configs import tools_dir
    script = osp.join(tools_dir(), 'misc', 'make_demo_data.py')
    argv = sys.argv[1:] if argv is None else list(argv)
    return runpy.run_path(script)['main']([kind, *argv])


__all__ = ['run_demo_script']
