"""mmsnn models: neurons -> layers -> mixers -> backbones -> necks / heads."""
from .backbones import ARCH_SETTINGS, MetaSDT, QKFormer, SDTv1, Spikformer  # noqa: F401
from .checkpoint import (CheckpointMismatchError, convert_reference_checkpoint,  # noqa: F401
                         load_pretrained)
from .neurons import build_neuron  # noqa: F401
from .fusion import fuse_for_inference  # noqa: F401
from . import necks  # noqa: F401,E402
from . import det_heads  # noqa: F401,E402
from . import seg_heads  # noqa: F401,E402

__all__ = ['MetaSDT', 'ARCH_SETTINGS', 'Spikformer', 'SDTv1', 'QKFormer', 'convert_reference_checkpoint', 'load_pretrained',
           'CheckpointMismatchError', 'build_neuron', 'fuse_for_inference']
