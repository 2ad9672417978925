"""Deprecated path: checkpoint file I/O and checks is :mod:`mmsnn.utils.checkpoint_io` (kept for one release)."""
import sys

from . import checkpoint_io as _moved
from .deprecation import warn_moved

warn_moved('mmsnn.utils.checkpoint', 'mmsnn.utils.checkpoint_io')
# the old path is the new module itself: its names, its state, and a monkeypatch of either
sys.modules[__name__] = _moved
