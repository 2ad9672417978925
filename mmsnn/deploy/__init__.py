"""Deployment: the inference rewrite of a trained model, and the inference process's settings.

* :mod:`.convert` -- :func:`convert_for_inference` (``tools/test.py --fuse-conv-bn``): BN
  folding, each mmsnn block's own ``switch_to_deploy()``, the CPU kernels of
  :mod:`mmsnn.ops`, and the seg post-processing patch.
* :mod:`.bn_folding` -- Conv -> BN folding (torch's ``fuse_conv_bn_weights``).
* :mod:`.seg_postprocess` -- mmseg's ``postprocess_result`` without wasted work.
* :mod:`.allocator` -- :func:`keep_freed_memory`, the opt-in glibc setting of an inference
  process.
"""
from .allocator import keep_freed_memory  # noqa: F401
from .bn_folding import fold_bn_into_conv, fold_conv_bn  # noqa: F401
from .convert import convert_for_inference, on_cpu, switch_to_deploy  # noqa: F401

__all__ = ['convert_for_inference', 'switch_to_deploy', 'fold_bn_into_conv', 'fold_conv_bn',
           'keep_freed_memory', 'on_cpu']
