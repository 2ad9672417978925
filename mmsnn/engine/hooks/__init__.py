"""mmengine hooks of mmsnn (registered in the mmdet and mmseg scopes)."""
from .checkpoint_hook import AtomicCheckpointHook, use_atomic_checkpoints  # noqa: F401
from .st_erf_hook import STERFHook, add_st_erf_hook  # noqa: F401

__all__ = ['AtomicCheckpointHook', 'use_atomic_checkpoints', 'STERFHook', 'add_st_erf_hook']
