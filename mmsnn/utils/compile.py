"""``torch.compile`` and mmsnn models: the eager module under a compiled one.

How a model gets compiled: mmengine's runner option ``compile`` (``tools/train.py CONFIG
--cfg-options compile=True``, or ``compile=dict(backend=..., mode=..., dynamic=...)``, the
keyword arguments of :func:`torch.compile`) compiles ``model.train_step`` before training.

Varying input sizes (mmdet's multi-scale training, a new ``(H, W)`` every iteration) do not
recompile every iteration with the default ``dynamic=None``: the first size is compiled with
static shapes; when a second size fails the shape guards, dynamo recompiles once with the
changed dimensions symbolic ("automatic dynamic shapes"), and that graph serves every later
size. So N sizes cost two compilations per compiled frame, not N (``tests/test_engine/test_compile.py``
counts them). ``compile=dict(dynamic=True)`` skips the static first compilation; padding to
size buckets (the data preprocessor's ``pad_size_divisor``) would still compile once per
bucket, so mmsnn relies on the default.

Inductor's on-disk cache and ``ATEN_CPU_CAPABILITY``: inductor generates its C++ kernels for
the vector width of the ISA that variable names (8 floats for ``avx2``, 16 natively on an
AVX-512 CPU), but its FX graph cache does not key on it. A process with the other setting
then reuses the cached graph and compiles its kernels' source with its own ISA: a kernel
written for 8 lanes stores 16 into an 8-lane buffer (seen: wrong values, and a segmentation
fault in the generated wrapper, torch 2.13). ``import mmsnn`` therefore gives each pinned
capability a cache folder of its own (:func:`separate_inductor_cache_by_isa`).
"""
import getpass
import os
import os.path as osp
import re
import tempfile

import torch.nn as nn

#: the sub-folder of inductor's cache for a process with ``ATEN_CPU_CAPABILITY=<isa>``
ISA_CACHE_PREFIX = 'aten_cpu_capability_'


def _default_inductor_cache():
    """Inductor's own cache folder when ``TORCHINDUCTOR_CACHE_DIR`` is not set."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # torch before 2.4: its cache_dir() used this folder
        return osp.join(tempfile.gettempdir(), 'torchinductor_' + getpass.getuser())
    return default_cache_dir()


def separate_inductor_cache_by_isa(environ=None):
    """Point ``TORCHINDUCTOR_CACHE_DIR`` at a folder of its own for the vector ISA pinned by
    ``ATEN_CPU_CAPABILITY`` (``<cache>/aten_cpu_capability_avx2``), and back at the plain
    cache when it is not pinned (a child process inherits its parent's setting), so that no
    process reuses kernels generated for another vector width (module docstring). Without
    the variable and without such a folder the setting is left alone. Returns the cache
    folder set, or None where nothing was set."""
    environ = os.environ if environ is None else environ
    isa = re.sub(r'[^a-z0-9_]', '_', environ.get('ATEN_CPU_CAPABILITY', '').strip().lower())
    current = environ.get('TORCHINDUCTOR_CACHE_DIR')
    pinned_before = bool(current) and \
        osp.basename(osp.normpath(current)).startswith(ISA_CACHE_PREFIX)
    if not isa and not pinned_before:
        return None  # the common case, at every import: nothing to look up
    base = osp.normpath(current) if current else _default_inductor_cache()
    if pinned_before:
        base = osp.dirname(base)
    target = osp.join(base, ISA_CACHE_PREFIX + isa) if isa else base
    environ['TORCHINDUCTOR_CACHE_DIR'] = target
    return target


def eager_module(model):
    """The eager ``nn.Module`` under ``model``: the original module of a
    ``torch.compile(module)`` result (``OptimizedModule._orig_mod``), else ``model`` itself.

    Tools that hook modules or differentiate through them (the ST-ERF and energy tools) take
    this one: they need every module call to run in Python. A model compiled by mmengine's
    runner is the eager module already (the runner replaces only its ``train_step``)."""
    while isinstance(getattr(model, '_orig_mod', None), nn.Module):
        model = model._orig_mod
    return model


__all__ = ['eager_module', 'separate_inductor_cache_by_isa']
