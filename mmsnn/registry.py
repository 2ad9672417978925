"""Where mmsnn's modules are registered.

mmdet and mmseg each have their own registries (children of mmengine's root). A config runs
in one scope (``default_scope = 'mmdet'`` or ``'mmseg'``), and a registry lookup searches that
scope and its parents, never its siblings. So a module meant for both toolboxes (the backbone,
the ERF hook) is registered in both; detection parts only in mmdet, segmentation parts only in
mmseg. ``register(kind, scopes)`` is the one decorator every mmsnn module uses, so the list of
what mmsnn provides is also kept here (``MMSNN_MODULES``) for error messages.
"""
from collections import defaultdict

from mmdet import registry as mmdet_registry
from mmseg import registry as mmseg_registry

_SCOPES = {'mmdet': mmdet_registry, 'mmseg': mmseg_registry}
_KINDS = {'model': 'MODELS', 'hook': 'HOOKS', 'dataset': 'DATASETS',
          'transform': 'TRANSFORMS', 'metric': 'METRICS', 'visualizer': 'VISUALIZERS'}

#: {kind: {name: (scopes...)}} of everything mmsnn registered.
MMSNN_MODULES = defaultdict(dict)


def get_registry(kind, scope):
    """The registry of ``kind`` ('model', 'hook', ...) in ``scope`` ('mmdet' or 'mmseg')."""
    return getattr(_SCOPES[scope], _KINDS[kind])


def register(kind='model', scopes=('mmdet', 'mmseg'), name=None):
    """Class decorator: register in the ``kind`` registry of every scope in ``scopes``."""
    if kind not in _KINDS:
        raise KeyError(f'unknown registry kind {kind!r}; known: {sorted(_KINDS)}')

    def decorator(cls):
        key = name or cls.__name__
        for scope in scopes:
            get_registry(kind, scope).register_module(name=key, module=cls, force=True)
        MMSNN_MODULES[kind][key] = tuple(scopes)
        return cls

    return decorator


def mmsnn_names(kind='model', scope=None):
    """Names mmsnn registered for ``kind`` (optionally only those visible from ``scope``)."""
    return sorted(n for n, s in MMSNN_MODULES[kind].items() if scope is None or scope in s)
