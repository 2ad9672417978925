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
"""
import torch.nn as nn


def eager_module(model):
    """The eager ``nn.Module`` under ``model``: the original module of a
    ``torch.compile(module)`` result (``OptimizedModule._orig_mod``), else ``model`` itself.

    Tools that hook modules or differentiate through them (the ST-ERF and energy tools) take
    this one: they need every module call to run in Python. A model compiled by mmengine's
    runner is the eager module already (the runner replaces only its ``train_step``)."""
    while isinstance(getattr(model, '_orig_mod', None), nn.Module):
        model = model._orig_mod
    return model


__all__ = ['eager_module']
