from .meta_sdt import ARCH_SETTINGS, EARLY_BLOCKS, MetaSDT
from .qkformer import QKFormer
from .sdt_v1 import SDTv1
from .spikformer import Spikformer

#: reference class name (ST-ERF reference code) -> mmsnn backbone with a
#: ``from_reference_config`` classmethod
REFERENCE_CLASSES = {
    'Spiking_vit': Spikformer,
    'SpikeDrivenTransformer': SDTv1,
    'hierarchical_spiking_transformer': QKFormer,
}

__all__ = ['MetaSDT', 'ARCH_SETTINGS', 'EARLY_BLOCKS', 'Spikformer', 'SDTv1', 'QKFormer',
           'REFERENCE_CLASSES']
