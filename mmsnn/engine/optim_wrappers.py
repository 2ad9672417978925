"""Optimizer wrappers of mmsnn (registered in mmengine's root ``OPTIM_WRAPPERS``).

mmengine's ``AmpOptimWrapper`` asserts CUDA; :class:`CPUAmpOptimWrapper` is mixed precision on
a CPU (``tools/train.py --amp`` picks it there, through ``mmsnn.utils.runtime``).
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """Mixed precision on CPU: the forward pass runs under bf16 autocast; no loss scaling.

    Args:
        dtype (str | torch.dtype): autocast dtype, 'bfloat16' (default) or 'float16'.
        **kwargs: as for :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self, dtype='bfloat16', **kwargs):
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), \
                torch.autocast(device_type='cpu', dtype=self.cast_dtype):
            yield


__all__ = ['CPUAmpOptimWrapper']
