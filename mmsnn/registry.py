"""Where mmsnn's modules are registered.

mmdet and mmseg each have their own registries (children of mmengine's root). A config runs
in one scope (``default_scope = 'mmdet'`` or ``'mmseg'``), and a registry lookup searches that
scope and its parents, never its siblings. So a module meant for both toolboxes (the backbone,
the ERF hook) is registered in both; detection parts only in mmdet, segmentation parts only in
mmseg. ``register(kind, scopes)`` is the one decorator every mmsnn module uses, so the list of
what mmsnn provides is also kept here (``MMSNN_MODULES``), and
:func:`explain_registry_error` turns mmengine's "X is not in the Y registry" into a message
that names the near names and mmsnn's modules of that kind.
"""
import difflib
import importlib
import re
from collections import defaultdict

from mmengine.registry import Registry

from mmdet import registry as mmdet_registry
from mmseg import registry as mmseg_registry

from .utils.errors import MMSNNUserError, explains_key_errors

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
        if cls.__module__ == '__main__':
            # ``python -m mmsnn.<module>`` runs a module that ``import mmsnn`` has already
            # imported (and registered) a second time, as __main__: keep the first class
            return cls
        for scope in scopes:
            get_registry(kind, scope).register_module(name=key, module=cls)
        MMSNN_MODULES[kind][key] = tuple(scopes)
        return cls

    return decorator


def mmsnn_names(kind='model', scope=None):
    """Names mmsnn registered for ``kind`` (optionally only those visible from ``scope``)."""
    return sorted(n for n, s in MMSNN_MODULES[kind].items() if scope is None or scope in s)


_REGISTRY_MISS = re.compile(r"'?([\w.\-]+) is not in the (?:(\w+)::)?(\w+) registry")


def _find_registry(scope, name):
    """The registry called ``name`` of ``scope`` (or of mmengine's root)."""
    for module_name, owner in ((f'{scope}.registry', scope), ('mmengine.registry', 'mmengine')):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for obj in vars(module).values():
            if isinstance(obj, Registry) and obj.name == name and obj.scope == owner:
                return obj
    return None


def _registered_names(registry):
    names = set()
    while registry is not None:
        try:
            registry.import_from_location()  # the toolboxes register lazily
        except Exception:  # noqa: BLE001 - suggestions are best effort
            pass
        names.update(registry.module_dict)
        registry = registry.parent
    return names


@explains_key_errors  # run_tool asks it about every KeyError
def explain_registry_error(exc, scope=None):
    """A user error for mmengine's "X is not in the Y registry" ``KeyError``, else None."""
    match = _REGISTRY_MISS.search(str(exc))
    if not match:
        return None
    name, reg_scope, reg_name = match.group(1), match.group(2) or scope, match.group(3)
    lines = [f"unknown {reg_name} type {name!r}: the {reg_scope or 'default'} scope's "
             f'{reg_name} registry has no such name.']
    registry = _find_registry(reg_scope, reg_name) if reg_scope else None
    if registry is not None:
        near = difflib.get_close_matches(name, sorted(_registered_names(registry)), n=3)
        if near:
            lines.append(f'  did you mean: {", ".join(near)}?')
    elsewhere = MMSNN_MODULES.get(reg_name, {}).get(name)
    if elsewhere and reg_scope not in elsewhere:
        lines.append(f'  {name!r} is an mmsnn module for {"/".join(elsewhere)} only, but this '
                     f"config runs in {reg_scope!r} (default_scope).")
    kind = reg_name if reg_name in MMSNN_MODULES else None
    if kind:
        names = mmsnn_names(kind, reg_scope if reg_scope in ('mmdet', 'mmseg') else None)
        lines.append(f'  mmsnn {kind} types in {reg_scope}: {", ".join(names) or "(none)"}')
    lines.append("  fix: correct the type name; if it is an mmsnn module, make sure the config "
                 "imports mmsnn: custom_imports = dict(imports=['mmsnn'], "
                 'allow_failed_imports=False)')
    return MMSNNUserError('\n'.join(lines))
