"""The restricted unpickler mmsnn reads checkpoints with, the same on every supported torch.

A checkpoint is a pickle, and unpickling can call any importable function (``os.system``).
torch's own guard, ``torch.load(weights_only=True)``, accepts extra types (mmengine's
``HistoryBuffer``, numpy arrays) only through allow-list APIs that appeared in torch 2.4 / 2.5,
so on the older torch that mmsnn declares (``torch>=2.1``) it refused every checkpoint
``tools/train.py`` writes. This module is a pickle module for ``torch.load(pickle_module=...)``
(an argument every torch 2.x has) whose unpickler resolves a global only from a fixed table
(:func:`allowed_globals`): torch's tensor, storage and dtype objects, containers, numpy
scalars/arrays, ``argparse.Namespace`` and mmengine's ``HistoryBuffer``. Every other global is
refused by name before anything of the file runs: pickle can call nothing it did not get
from ``find_class``.
"""
import _compat_pickle
import argparse
import codecs
import collections
import functools
import io
import pickle

import numpy as np
import torch

#: the statistics every HistoryBuffer registers (``HistoryBuffer.__init__``)
_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_method(obj, name):
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


def _present(module, names):
    """``{'module.name': object}`` for the names this version of ``module`` has."""
    return {f'{module.__name__}.{n}': getattr(module, n) for n in names if hasattr(module, n)}


def _torch_globals():
    """What ``torch.save`` itself pickles: tensors, parameters, storages, sizes, devices."""
    table = _present(torch._utils, [
        '_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter',
        '_rebuild_parameter_with_state', '_rebuild_qtensor', '_rebuild_sparse_tensor',
        '_rebuild_nested_tensor', '_rebuild_meta_tensor_no_storage',
        '_rebuild_wrapper_subclass', '_rebuild_device_tensor_from_numpy',
        '_rebuild_device_tensor_from_cpu_tensor'])
    table.update(_present(torch._tensor, ['_rebuild_from_type_v2']))
    table.update(_present(torch.serialization, ['_get_layout']))
    table.update({'torch.Tensor': torch.Tensor, 'torch.Size': torch.Size,
                  'torch.device': torch.device,
                  'torch.nn.parameter.Parameter': torch.nn.Parameter})
    for storage in torch._storage_classes:  # legacy typed storages (torch.FloatStorage, ...)
        table[f'{storage.__module__}.{storage.__name__}'] = storage
    return table


def _numpy_globals():
    """numpy scalars and arrays (in logs, and released checkpoints), under numpy 1's and
    numpy 2's module names."""
    multiarray = np.core.multiarray
    table = {}
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        table[f'{module}._reconstruct'] = multiarray._reconstruct
        table[f'{module}.scalar'] = multiarray.scalar
    table.update({'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype})
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 pickles dtypes by class
    if dtypes is not None:
        table.update({f'numpy.dtypes.{n}': getattr(dtypes, n) for n in dir(dtypes)
                      if n.endswith('DType')})
    return table


def mmengine_globals():
    """What mmengine's checkpoints and released research checkpoints add to torch's objects:
    ``{'module.name': object}``. (Also the allow-list mmsnn gives torch's own safe loader.)"""
    from mmengine.logging import HistoryBuffer
    table = _numpy_globals()
    table.update({
        'mmengine.logging.history_buffer.HistoryBuffer': HistoryBuffer,
        # a released training script's arguments, rebuilt as an attribute bag
        'argparse.Namespace': argparse.Namespace,
        # protocol 2 (torch.save's default) names getattr __builtin__, newer ones builtins
        'builtins.getattr': history_buffer_method,
        '__builtin__.getattr': history_buffer_method,
    })
    return table


@functools.lru_cache(maxsize=1)
def allowed_globals():
    """``{'module.name': object}``: every global a checkpoint may name."""
    table = {
        'collections.OrderedDict': collections.OrderedDict,
        # MultiStepLR (torch's and mmengine's) keeps its milestones in a Counter
        'collections.Counter': collections.Counter,
        'builtins.set': set, 'builtins.frozenset': frozenset, 'builtins.complex': complex,
        'builtins.bytearray': bytearray,
        '_codecs.encode': codecs.encode,  # how protocol 2 pickles bytes
    }
    table.update(_torch_globals())
    table.update(mmengine_globals())
    return table


#: torch's enum-like values pickled by name (``torch.float32``, ``torch.strided``, ...)
_TORCH_CONSTANT_TYPES = tuple(t for t in (torch.dtype, torch.layout, torch.memory_format,
                                          getattr(torch, 'qscheme', None)) if t is not None)


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only from :func:`allowed_globals`."""

    def find_class(self, module, name):
        candidates = [(module, name)]
        # protocol 0-2 pickles name Python 2 modules (__builtin__, copy_reg, ...)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            candidates.append(_compat_pickle.NAME_MAPPING[(module, name)])
        elif module in _compat_pickle.IMPORT_MAPPING:
            candidates.append((_compat_pickle.IMPORT_MAPPING[module], name))
        table = allowed_globals()
        for mod, attr in candidates:
            found = table.get(f'{mod}.{attr}')
            if found is not None:
                return found
            if mod == 'torch' and isinstance(getattr(torch, attr, None), _TORCH_CONSTANT_TYPES):
                return getattr(torch, attr)
        # the wording torch uses, so that callers can name what was refused
        raise pickle.UnpicklingError(
            f'unsupported GLOBAL {module}.{name}: a checkpoint may hold only tensors, '
            'containers, numpy scalars/arrays, argparse.Namespace and mmengine\'s own objects')


def load(file, **kwargs):
    """``pickle.load`` with :class:`Unpickler` (torch.load calls it for legacy files)."""
    return Unpickler(file, **kwargs).load()


def loads(data, **kwargs):
    """``pickle.loads`` with :class:`Unpickler`."""
    return load(io.BytesIO(data), **kwargs)
