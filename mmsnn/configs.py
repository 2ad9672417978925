"""Where mmsnn's configs and tools are: in an installed wheel or in the checkout.

A wheel ships the checkout's ``configs/`` and ``tools/`` inside the package as
``mmsnn/.mim/configs`` and ``mmsnn/.mim/tools`` (setup.py), where mmdet and mmseg keep theirs;
an editable install or a checkout on ``PYTHONPATH`` uses the checkout's own folders.

A config of the user's own project inherits an installed mmsnn config through its path::

    _base_ = [__import__('mmsnn.configs').configs.path('det/sdt_srb_s_coco.py')]

mmengine evaluates ``_base_`` as a Python expression before it runs ``custom_imports``, so
this works with every tool that reads mmengine configs (mmsnn's, mmdet's, mmseg's). mmengine
0.10.7's ``package::`` prefix is not an option: it knows a fixed list of packages, and mmsnn
could only add itself to that list once imported, which mmdet's and mmseg's tools do after
reading ``_base_``.

    python -m mmsnn.configs                        # the configs folder
    python -m mmsnn.configs det/sdt_srb_s_coco.py  # one config's absolute path
    python -m mmsnn.configs --tools                # the tools folder (train.py, test.py, ...)
"""
import argparse
import os.path as osp
import sys

from .utils.errors import MMSNNUserError, run_tool

_PACKAGE = osp.dirname(osp.abspath(__file__))


def _folder(name):
    for folder in (osp.join(_PACKAGE, '.mim', name),  # installed from a wheel
                   osp.join(osp.dirname(_PACKAGE), name)):  # checkout, editable install
        if osp.isdir(folder):
            return folder
    raise MMSNNUserError(
        f'this mmsnn ({_PACKAGE}) has no {name} folder: neither {name}/ of a checkout nor '
        f'the .mim/{name}/ of an installed wheel.\n'
        '  fix: install mmsnn from a wheel built with its setup.py (pip install <checkout>), '
        'or use a full checkout.')


def configs_dir():
    """The folder of mmsnn's configs (``det/``, ``seg/``)."""
    return _folder('configs')


def tools_dir():
    """The folder of mmsnn's tools (``train.py``, ``test.py``, ``dist_train.sh``, ...)."""
    return _folder('tools')


def path(name):
    """Absolute path of the mmsnn config ``name``, e.g. ``'det/sdt_srb_s_coco.py'``."""
    root = configs_dir()
    file = osp.normpath(osp.join(root, name))
    if not osp.isfile(file) or not file.startswith(root + osp.sep):
        raise MMSNNUserError(
            f'mmsnn has no config {name!r} (looked for {file}).\n'
            f'  fix: name a file under {root}, relative to it, e.g. '
            "'det/sdt_srb_s_coco.py' or 'seg/demo/sdt_srb_demo.py'.")
    return file


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m mmsnn.configs',
        description='Print where mmsnn\'s configs (or tools) are, or the path of one config.')
    parser.add_argument('name', nargs='?', help='a config relative to the configs folder, '
                        'e.g. det/sdt_srb_s_coco.py')
    parser.add_argument('--tools', action='store_true', help='print the tools folder')
    args = parser.parse_args(argv)

    def show():
        if args.tools:
            print(tools_dir())
        else:
            print(path(args.name) if args.name else configs_dir())
        return 0

    return run_tool(show)


if __name__ == '__main__':
    sys.exit(main())
