"""mmsnn models: neurons -> layers -> mixers -> backbones -> necks / heads."""
from .backbones import ARCH_SETTINGS, MetaSDT, QKFormer, SDTv1, Spikformer  # noqa: F401
from .reference_conversion import (CheckpointMismatchError, convert_reference_checkpoint,  # noqa: F401
                         load_pretrained)
from .neurons import build_neuron  # noqa: F401
from . import necks  # noqa: F401,E402
from . import det_heads  # noqa: F401,E402
from . import seg_heads  # noqa: F401,E402

__all__ = ['MetaSDT', 'ARCH_SETTINGS', 'Spikformer', 'SDTv1', 'QKFormer', 'convert_reference_checkpoint', 'load_pretrained',
           'CheckpointMismatchError', 'build_neuron']


def __getattr__(name):
    # deprecated names kept for one release (PEP 562: resolved, and warned about, on use)
    if name == 'fuse_for_inference':
        from ..deploy.convert import convert_for_inference
        from ..utils.deprecation import warn_moved
        warn_moved('mmsnn.models.fuse_for_inference', 'mmsnn.deploy.convert_for_inference')
        return convert_for_inference
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
