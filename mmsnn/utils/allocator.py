"""Deprecated path: the allocator setting is :mod:`mmsnn.deploy.allocator` (kept for one
release)."""
import sys

from ..deploy import allocator as _moved
from .deprecation import warn_moved

warn_moved('mmsnn.utils.allocator', 'mmsnn.deploy.allocator')
# the old path is the new module itself: its names, its state, and a monkeypatch of either
sys.modules[__name__] = _moved
