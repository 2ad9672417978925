"""Utilities: safe checkpoint loading, the tools' input checks, CPU/GPU runtime set-up."""
from .config_checks import MMSNNUserError  # noqa: F401
from . import runtime  # noqa: F401,E402  (registers CPUAmpOptimWrapper, CPUDistributedDataParallel)

__all__ = ['MMSNNUserError']
