"""Where the tests find the reference goldens: ``tests/data/goldens/`` in the repository
(packed losslessly by ``tools/misc/pack_goldens.py`` from the reference's ``.pt`` files), so
a clone of the project alone runs every test. Extra files (``.pt`` or packed) come in through
``MMSNN_GOLDEN`` (the Meta-SDT parity file), ``MMSNN_REFERENCE_GOLDENS`` and
``MMSNN_ZOO_GOLDENS`` (``os.pathsep``-separated lists)."""
import os
from functools import lru_cache
from pathlib import Path

from mmsnn.testing.goldens import SUFFIX, load_golden

GOLDENS = Path(__file__).resolve().parent / 'goldens'


def golden_path(name):
    """``tests/data/goldens/<name>`` (``name`` without suffix, e.g. 'reference_heads/det_golden')."""
    return GOLDENS / f'{name}{SUFFIX}'


def golden_files(folder, env):
    """The packed goldens of ``folder`` plus the files named in the environment variable."""
    files = sorted((GOLDENS / folder).glob(f'*{SUFFIX}'))
    files += [Path(p) for p in os.environ.get(env, '').split(os.pathsep) if p.strip()]
    return files


def golden_name(path):
    """'det_golden' for '.../det_golden.golden.xz' or '.../det_golden.pt'."""
    name = Path(path).name
    return name[:-len(SUFFIX)] if name.endswith(SUFFIX) else Path(name).stem


@lru_cache(maxsize=None)
def read_golden(path):
    """The golden tree of ``path`` (cached: several tests read each file)."""
    path = Path(path)
    assert path.is_file(), f'golden file {path} is missing'
    return load_golden(path)


def meta_sdt_parity():
    """The Meta-SDT parity golden: one dict per mixer ('conv', 'mlpixer', 'srb')."""
    return read_golden(os.environ.get('MMSNN_GOLDEN') or golden_path('meta_sdt_parity'))
