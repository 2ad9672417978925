"""Training-time machinery of mmsnn (hooks)."""
from . import hooks  # noqa: F401
