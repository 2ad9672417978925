"""Utilities of the tools: user errors, config / data / work-dir / checkpoint checks, resume,
and the CPU/GPU runtime set-up (one concept per module)."""
from .errors import MMSNNUserError  # noqa: F401
from . import runtime  # noqa: F401,E402  (registers CPUAmpOptimWrapper, CPUDistributedDataParallel)

__all__ = ['MMSNNUserError']
