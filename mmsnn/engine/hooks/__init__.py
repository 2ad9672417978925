"""mmengine hooks of mmsnn (registered in the mmdet and mmseg scopes)."""
from .checkpoint_hook import AtomicCheckpointHook, use_atomic_checkpoints  # noqa: F401
from .energy_hook import EnergyHook  # noqa: F401
from .nonfinite_loss_hook import NonFiniteLossHook, add_nonfinite_loss_hook  # noqa: F401
from .st_erf_hook import STERFHook, add_st_erf_hook  # noqa: F401

__all__ = ['AtomicCheckpointHook', 'use_atomic_checkpoints', 'NonFiniteLossHook',
           'add_nonfinite_loss_hook', 'STERFHook', 'add_st_erf_hook', 'EnergyHook']
