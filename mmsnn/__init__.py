"""mmsnn: spiking neural networks for dense prediction, as an OpenMMLab plugin.

``import mmsnn`` (or ``custom_imports=dict(imports=['mmsnn'])`` in a config) registers every
mmsnn module in the mmdet and mmseg registries.
"""
from .version import __version__  # noqa: F401
from . import utils  # noqa: F401,E402  (user errors, checks, CPU runtime wrappers)
from .utils.compile import separate_inductor_cache_by_isa  # noqa: E402

# before anything compiles: inductor's cache must not mix kernel widths (see that function)
separate_inductor_cache_by_isa()
from . import models  # noqa: F401,E402
from . import datasets  # noqa: F401,E402
from . import engine  # noqa: F401,E402
from . import deploy  # noqa: F401,E402  (the inference rewrite)
