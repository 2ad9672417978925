"""Deprecated path: the separable RoIAlign is :mod:`mmsnn.ops.roi_align` (kept for one release)."""
from ..ops.roi_align import *  # noqa: F401,F403
from ..ops.roi_align import CHUNK_ELEMENTS, __all__  # noqa: F401
from ..utils.deprecation import warn_moved

warn_moved('mmsnn.models.fast_roi_align', 'mmsnn.ops.roi_align')
