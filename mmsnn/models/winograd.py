"""Deprecated path: the Winograd convolution is :mod:`mmsnn.ops.winograd` (kept for one release)."""
from ..ops.winograd import *  # noqa: F401,F403
from ..ops.winograd import __all__  # noqa: F401
from ..utils.deprecation import warn_moved

warn_moved('mmsnn.models.winograd', 'mmsnn.ops.winograd')
