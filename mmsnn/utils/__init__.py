"""Utilities of the tools: user errors, config / data / work-dir / checkpoint checks, resume,
the CPU/GPU runtime set-up and the inference allocator setting (one concept per module)."""
from .errors import MMSNNUserError  # noqa: F401
from .allocator import keep_freed_memory  # noqa: F401
from . import runtime  # noqa: F401,E402  (registers CPUAmpOptimWrapper, CPUDistributedDataParallel)

__all__ = ['MMSNNUserError', 'keep_freed_memory']
