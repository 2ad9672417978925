"""Loading checkpoints safely under torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7 calls plain
``torch.load`` when it resumes, and its own checkpoints hold a few non-tensor objects
(``HistoryBuffer`` of the message hub, numpy scalars/arrays in the logs), so resuming fails.
Instead of turning safe loading off, we add exactly those types to torch's allow-list of
safe globals, once, at ``import mmsnn``; the one ``getattr`` such a checkpoint holds
(``getattr(HistoryBuffer, 'min')``) is served by a stand-in that resolves nothing else.
Arbitrary pickled objects in user files are still refused.
"""
import os
import pickle

import numpy as np
import torch


def _mmengine_safe_globals():
    from mmengine.logging import HistoryBuffer
    globs = [HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray._reconstruct,
             np.core.multiarray.scalar]
    # numpy dtype classes (np.dtypes.Float64DType, ...) appear in pickled arrays
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        globs += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return globs


#: the statistics every HistoryBuffer registers (``HistoryBuffer.__init__``)
_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(obj, name):
    """Stand-in for ``getattr`` while unpickling: resolves only ``HistoryBuffer.<statistic>``.

    A pickled ``HistoryBuffer`` keeps its statistics functions, which pickle stores as
    ``getattr(HistoryBuffer, 'min')``. Allowing the real ``getattr`` would let a file reach
    any attribute of any allowed object (and from there, arbitrary code), so this function
    is registered under the name ``getattr`` instead and refuses everything else.
    """
    from mmengine.logging import HistoryBuffer
    allowed = set(_HISTORY_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if obj is not HistoryBuffer or not isinstance(name, str) or name not in allowed \
            or name.startswith('_'):
        raise pickle.UnpicklingError(
            f'refusing getattr({obj!r}, {name!r}) in a checkpoint: only HistoryBuffer '
            f'statistics ({", ".join(sorted(allowed))}) may be looked up')
    return getattr(HistoryBuffer, name)


def allow_mmengine_checkpoints():
    """Let ``torch.load(weights_only=True)`` read mmengine's own checkpoint objects."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has no allow-list and loads everything anyway
        add(_mmengine_safe_globals())
        # pickle protocol 2 (torch.save's default) names it __builtin__, newer ones builtins
        add([(_history_buffer_method, '__builtin__.getattr'),
             (_history_buffer_method, 'builtins.getattr')])


def load_checkpoint_file(path, map_location='cpu'):
    """``torch.load`` with safe loading, and a clear error for a missing or foreign file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist; check the path given as '
                                'init_cfg.checkpoint / --checkpoint / load_from')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the fix named
        raise RuntimeError(
            f'could not read checkpoint {path!r} safely ({type(e).__name__}: '
            f'{str(e).splitlines()[0]}). mmsnn loads only tensors and mmengine\'s own '
            'objects; convert other files with torch.save(state_dict) first.') from e


allow_mmengine_checkpoints()
