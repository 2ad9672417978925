"""Training-time machinery of mmsnn: hooks, and the CPU optimizer / model wrappers."""
from . import compile, hooks  # noqa: F401
from .model_wrappers import CPUDistributedDataParallel  # noqa: F401
from .optim_wrappers import CPUAmpOptimWrapper  # noqa: F401

__all__ = ['CPUAmpOptimWrapper', 'CPUDistributedDataParallel']
