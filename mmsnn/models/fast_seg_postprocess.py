"""Deprecated path: mmseg's fast prediction step is :mod:`mmsnn.deploy.seg_postprocess` (kept
for one release)."""
import sys

from ..deploy import seg_postprocess as _moved
from ..utils.deprecation import warn_moved

warn_moved('mmsnn.models.fast_seg_postprocess', 'mmsnn.deploy.seg_postprocess')
# the old path is the new module itself: its names, its state, and a monkeypatch of either
sys.modules[__name__] = _moved
