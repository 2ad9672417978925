"""Deprecated path: the inference fast path is :mod:`mmsnn.deploy` (kept for one release).

``fuse_for_inference`` is :func:`mmsnn.deploy.convert_for_inference` under its old name.
"""
from ..deploy.allocator import keep_freed_memory  # noqa: F401
from ..deploy.bn_folding import fold_bn_into_conv  # noqa: F401
from ..deploy.convert import convert_for_inference as fuse_for_inference  # noqa: F401
from ..deploy.convert import on_cpu, train  # noqa: F401
from ..utils.deprecation import warn_moved

__all__ = ['fuse_for_inference', 'fold_bn_into_conv', 'on_cpu']

warn_moved('mmsnn.models.fusion', 'mmsnn.deploy (fuse_for_inference: convert_for_inference)')
