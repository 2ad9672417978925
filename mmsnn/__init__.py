"""mmsnn: spiking neural networks for dense prediction, as an OpenMMLab plugin.

``import mmsnn`` (or ``custom_imports=dict(imports=['mmsnn'])`` in a config) registers every
mmsnn module in the mmdet and mmseg registries.
"""
from .version import __version__  # noqa: F401
from .utils import checkpoint as _checkpoint  # noqa: F401  (safe loading of mmengine ckpts)
from . import models  # noqa: F401,E402
from . import datasets  # noqa: F401,E402
from . import engine  # noqa: F401,E402
