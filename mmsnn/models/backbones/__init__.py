from .meta_sdt import ARCH_SETTINGS, EARLY_BLOCKS, MetaSDT

__all__ = ['MetaSDT', 'ARCH_SETTINGS', 'EARLY_BLOCKS']
