"""Kernels: operators that compute what a standard op computes, with less work.

* :mod:`.winograd` -- 3x3 convolutions by NNPACK's Winograd algorithm (CPU, float32, no grad).
* :mod:`.roi_align` -- mmcv's average-pooling RoIAlign as two matrix products per RoI.
* :mod:`.depthwise_conv` -- depthwise convolutions whose weight gradient is a depthwise
  convolution too (CPU training; oneDNN's own is a slow GEMM for kernels above 3x3).
* :mod:`.count_conv` -- convolutions fed by spikes as exact int8 products of the spike counts
  (compiled CPU inference on AMX), and depthwise convs in channels-last layout there.
* :mod:`.lean_ilif` -- the I-LIF steps in preallocated buffers and their autograd function,
  which saves a 1-byte window instead of the float32 membrane.

The models use the kernels through their modules (:class:`~mmsnn.models.neurons.IntegerLIF`)
or get them installed by :func:`mmsnn.deploy.convert_for_inference` (and the count convs by
:func:`mmsnn.engine.compile.compile_for_inference`).
"""
from .count_conv import (CountConv1d, CountConv2d, CountLinear,  # noqa: F401
                         count_conv_applies, count_conv_pays, install_count_convs,
                         to_count_conv)
from .depthwise_conv import (DepthwiseConv2d, aten_depthwise_backward,  # noqa: F401
                             depthwise_applies, depthwise_conv2d, depthwise_weight_grad,
                             is_stride1_depthwise)
from .lean_ilif import LeanILIF, ilif_steps  # noqa: F401
from .roi_align import SeparableRoIAlign, separable_roi_align, swap_roi_align  # noqa: F401
from .winograd import WinogradConv2d, to_winograd, winograd_applies, winograd_available  # noqa: F401

__all__ = ['CountConv1d', 'CountConv2d', 'CountLinear', 'count_conv_applies', 'count_conv_pays',
           'install_count_convs', 'to_count_conv', 'DepthwiseConv2d', 'aten_depthwise_backward', 'depthwise_applies', 'depthwise_conv2d',
           'depthwise_weight_grad', 'is_stride1_depthwise', 'LeanILIF', 'ilif_steps',
           'SeparableRoIAlign', 'separable_roi_align', 'swap_roi_align', 'WinogradConv2d',
           'to_winograd', 'winograd_applies', 'winograd_available']
