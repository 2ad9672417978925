"""mmengine hooks of mmsnn (registered in the mmdet and mmseg scopes)."""
from .st_erf_hook import STERFHook, add_st_erf_hook  # noqa: F401

__all__ = ['STERFHook', 'add_st_erf_hook']
