"""Deprecated path: the Winograd convolution is :mod:`mmsnn.ops.winograd` (kept for one release)."""
import sys

from ..ops import winograd as _moved
from ..utils.deprecation import warn_moved

warn_moved('mmsnn.models.winograd', 'mmsnn.ops.winograd')
# the old path is the new module itself: its names, its state, and a monkeypatch of either
sys.modules[__name__] = _moved
