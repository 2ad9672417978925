"""What tools/train.py and tools/test.py share before they import anything heavy."""
import functools
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing: mmsnn and local modules
    sys.path.insert(0, ROOT)


@functools.lru_cache(maxsize=None)
def early_checks():
    """``mmsnn/utils/config_checks.py`` loaded on its own, without ``import mmsnn`` (torch,
    mmdet, mmseg: seconds), so that argument errors and a missing config answer at once."""
    path = osp.join(ROOT, 'mmsnn', 'utils', 'config_checks.py')
    spec = importlib.util.spec_from_file_location('_mmsnn_early_checks', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_mmsnn():
    """``import mmsnn`` first: it registers every mmsnn module in mmdet's and mmseg's scopes."""
    try:
        import mmsnn  # noqa: F401
    except ImportError as e:
        print(f'error: mmsnn cannot be imported ({type(e).__name__}: {e}).\n'
              '  fix: run `bash tools/setup_env.sh` and use its python (.venv/bin/python).',
              file=sys.stderr)
        raise SystemExit(2)
