"""Deprecated path: the reference checkpoint conversion is :mod:`mmsnn.models.reference_conversion` (kept for one release)."""
import sys

from . import reference_conversion as _moved
from ..utils.deprecation import warn_moved

warn_moved('mmsnn.models.checkpoint', 'mmsnn.models.reference_conversion')
# the old path is the new module itself: its names, its state, and a monkeypatch of either
sys.modules[__name__] = _moved
