"""Deprecated names kept for one release: one warning per old name and process.

A moved module leaves a thin module at its old path that re-exports the new one and calls
:func:`warn_moved` once on import; a moved function is reached through the old package's
``__getattr__`` (PEP 562), which calls it on first use. Nothing inside mmsnn imports an old
path (``tests/test_registry.py`` checks it).
"""
import warnings

_warned = set()


def warn_moved(old, new, stacklevel=3, same_object=True):
    """Warn (``DeprecationWarning``, once per ``old``) that ``old`` is now ``new``
    (``same_object=False``: ``new`` is called differently, e.g. with other arguments)."""
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(f'{old} is deprecated and will be removed in the next mmsnn release; '
                  f'use {new}' + (' (same object)' if same_object else ''),
                  DeprecationWarning, stacklevel=stacklevel)


__all__ = ['warn_moved']
