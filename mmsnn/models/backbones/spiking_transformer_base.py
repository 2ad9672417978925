"""What the three time-first spiking transformers (Spikformer, SDT v1, QKFormer) share.

* :class:`~mmsnn.models.neurons.MultiStepLIF` -- the reference's LIF neuron (it lives with
  the other neurons, in :mod:`mmsnn.models.neurons`).
* :class:`SpikingTransformerBackbone` -- the mmdet/mmseg backbone plumbing: input encoding,
  five stage taps (strides 2, 4, 8, 16, 16), mean over time, ``frozen_stages``,
  ``norm_eval``, ``init_cfg=dict(type='Pretrained', ...)`` through the one converter, and
  an optional ImageNet classifier (``num_classes > 0``) for checking against the reference.

Tensors are time-first, ``[T, B, C, H, W]``, as in the references: every conv, BN and
max-pool runs on the merged ``[T*B, ...]`` tensor (index ``t*B + b``), every LIF on the
un-merged tensor. Unlike the reference code (``H // 16`` reshapes) any input size works; a
stride-2 step maps a side ``n`` to ``ceil(n / 2)``.
"""
import re

import torch.nn as nn

from ..neurons import MultiStepLIF
from .base import SpikingBackbone

#: strides of the five stage taps of every model built on :class:`SpikingTransformerBackbone`
#: when all four tokenizer max-pools are on (tap 3 = tokenizer output, tap 4 = last block)
TAP_STRIDES = (2, 4, 8, 16, 16)


def merged(module, x):
    """Run ``module`` on ``x`` [T, B, ...] with time merged into the batch, ``[T*B, ...]``."""
    T, B = x.shape[:2]
    y = module(x.flatten(0, 1))
    return y.reshape(T, B, *y.shape[1:])


def apply_conv_bn(x, conv, bn):
    """``bn(conv(x))`` for ``x`` [T, B, ...], time merged into the batch (named apart from
    :func:`mmsnn.models.layers.conv_bn`, which builds a conv+BN module)."""
    return merged(lambda t: bn(conv(t)), x)


class SpikingTransformerBackbone(SpikingBackbone):
    """Base of the time-first spiking transformer backbones (see the module docstring).

    Subclasses build their layers, set ``tap_channels`` / ``tap_strides`` / ``_tap_modules``
    and implement ``_forward_taps(x, last)`` (``x`` is ``[T, B, C, H, W]``; returns the list
    of taps ``0..last`` as ``[T, B, C, h, w]``) and ``_forward_head(last_tap)``.
    """

    #: runs T real time steps (read by the ERF tools)
    stateful = True
    num_taps = 5

    def __init__(self, T=4, out_indices=(1, 2, 3, 4), num_classes=0, keep_time=False,
                 frozen_stages=-1, norm_eval=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i not in range(self.num_taps) for i in out_indices):
            raise ValueError(f'{name}: out_indices must index the stage taps '
                             f'0..{self.num_taps - 1}, got {out_indices}')
        if int(T) < 1:
            raise ValueError(f'{name}: T must be >= 1, got {T}')
        if int(num_classes) < 0:
            raise ValueError(f'{name}: num_classes must be >= 0, got {num_classes}')
        self.T = int(T)
        self.out_indices = out_indices
        self.num_classes = int(num_classes)
        self.keep_time = keep_time
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    # ------------------------------------------------------------------ shapes
    @property
    def out_channels(self):
        """Channels of the returned taps, in ``out_indices`` order (for neck configs)."""
        return [self.tap_channels[i] for i in self.out_indices]

    @property
    def out_strides(self):
        """Strides of the returned taps, in ``out_indices`` order (for anchors and RoIs)."""
        return [self.tap_strides[i] for i in self.out_indices]

    # ------------------------------------------------------------------ forward
    def encode(self, x):
        """``[B, C, H, W]`` -> the same frame at every step (direct encoding), or
        ``[T, B, C, H, W]`` with one frame per step -> as is."""
        name = type(self).__name__
        if x.dim() == 4:
            return x.unsqueeze(0).expand(self.T, *x.shape)
        if x.dim() == 5:
            if x.shape[0] != self.T:
                raise ValueError(f'{name} was built for T={self.T} time steps but got a 5-D '
                                 f'input with {x.shape[0]} along axis 0; pass [T, B, C, H, W] '
                                 f'(time first) with T={self.T}, or a [B, C, H, W] image')
            return x
        raise ValueError(f'{name} expects [B, C, H, W] or [T, B, C, H, W], got shape '
                         f'{tuple(x.shape)}')

    def forward(self, x, keep_time=None):
        """``x``: [B, C, H, W] (repeated over T) or [T, B, C, H, W].

        Returns the taps in ``out_indices`` as [B, C, h, w] (mean over time), or as
        [T, B, C, h, w] when ``keep_time`` (argument or constructor) is true.
        """
        keep_time = self.keep_time if keep_time is None else keep_time
        taps = self._forward_taps(self.encode(x), max(self.out_indices))
        return tuple(taps[i] if keep_time else taps[i].mean(0) for i in self.out_indices)

    def classify(self, x):
        """ImageNet logits ``[B, num_classes]`` of the reference classifier (needs
        ``num_classes > 0``)."""
        if not self.num_classes:
            raise RuntimeError(f'{type(self).__name__} was built without a classifier; pass '
                               'num_classes > 0 to use classify()')
        taps = self._forward_taps(self.encode(x), self.num_taps - 1)
        return self._forward_head(taps[-1])

    def _resolve_arch(self, arch_settings, arch, depth, embed_dims, num_heads):
        """``(depth, embed_dims, num_heads)`` of ``arch`` (a key of the family's
        ``ARCH_SETTINGS``: (depth, embed_dims, num_heads)) with any given value overriding
        it; also stored on the model."""
        name = type(self).__name__
        if arch not in arch_settings and None in (embed_dims, depth, num_heads):
            raise KeyError(f'unknown {name} arch {arch!r}; choose one of '
                           f'{sorted(arch_settings)} or pass embed_dims, depth and num_heads')
        d0, e0, h0 = arch_settings.get(arch, (None, None, None))
        depth = d0 if depth is None else int(depth)
        embed_dims = e0 if embed_dims is None else int(embed_dims)
        num_heads = h0 if num_heads is None else int(num_heads)
        if embed_dims % 8:
            raise ValueError(f'{name} embed_dims must be a multiple of 8, got {embed_dims}')
        self.embed_dims, self.depth, self.num_heads = embed_dims, depth, num_heads
        return depth, embed_dims, num_heads

    # ------------------------------------------------------------------ training
    def _stage_modules(self, i):
        names = self._tap_modules[i] if i < self.num_taps else ()
        return [self.get_submodule(name) for name in names]

    def checkpoint_filter(self, state_dict):
        """Reference checkpoint keys -> this model's keys: the family's
        ``checkpoint_filter_fn`` (beside the model), called by the one converter."""
        return self.checkpoint_filter_fn(state_dict, self)

    @staticmethod
    def checkpoint_filter_fn(state_dict, model=None):
        return dict(state_dict)


def filter_reference_keys(state_dict, unused, model=None):
    """``state_dict`` without the keys whose name matches the regular expression ``unused``
    (layers the reference declares but never runs), and without the classifier ``head.*``
    when ``model`` is given and has none."""
    pattern = re.compile(unused) if unused else None
    drop_head = model is not None and not getattr(model, 'num_classes', 0)
    return {k: v for k, v in state_dict.items()
            if not (pattern is not None and pattern.search(k))
            and not (drop_head and k.startswith(('head.', 'head_lif.')))}


__all__ = ['MultiStepLIF', 'SpikingTransformerBackbone', 'merged', 'apply_conv_bn',
           'filter_reference_keys', 'TAP_STRIDES']
