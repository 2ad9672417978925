"""Deprecated path: the separable RoIAlign is :mod:`mmsnn.ops.roi_align` (kept for one release)."""
import sys

from ..ops import roi_align as _moved
from ..utils.deprecation import warn_moved

warn_moved('mmsnn.models.fast_roi_align', 'mmsnn.ops.roi_align')
# the old path is the new module itself: its names, its state, and a monkeypatch of either
sys.modules[__name__] = _moved
