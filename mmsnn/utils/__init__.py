"""Utilities of the tools: user errors, config / data / work-dir / checkpoint checks, resume,
the CPU/GPU runtime set-up (one concept per module). utils imports nothing else of mmsnn."""
from .errors import MMSNNUserError  # noqa: F401

__all__ = ['MMSNNUserError']


def __getattr__(name):
    # deprecated names kept for one release (PEP 562: resolved, and warned about, on use)
    if name == 'keep_freed_memory':
        from ..deploy.allocator import keep_freed_memory
        from .deprecation import warn_moved
        warn_moved('mmsnn.utils.keep_freed_memory', 'mmsnn.deploy.keep_freed_memory')
        return keep_freed_memory
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
