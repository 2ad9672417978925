"""mmseg's prediction step (``postprocess_result``) for the inference fast path, same results.

A profile of the fused Semantic FPN at 512x512 (``tools/analysis/benchmark.py --fast-path
--profile --tasks seg``) spends about a quarter of its time after the model, in mmseg's
``BaseSegmentor.postprocess_result``:

* it resizes the 150-class logits to the image's original size even when they already have
  that size. A bilinear resize to the same size reproduces its input exactly (every source
  coordinate falls on a pixel, with weights 1 and 0), so skipping it changes nothing;
* ``logits.argmax(dim=0)`` reduces over the outer, strided dimension, which torch's CPU
  reduction does slowly (~150 ms for 150 x 512 x 512). :func:`argmax_over_channels` keeps a
  running maximum over the classes instead, a few contiguous passes of one class plane each,
  and returns the same indices, ties (first class wins) and NaN (first NaN wins) included.

:func:`install` puts the fast version on a segmentor instance; it handles the common case
(no padding to remove, no flip, logits already at the original size, several classes) and
hands every other case to mmseg's own method unchanged.
"""
import types

import torch


def argmax_over_channels(logits):
    """``logits.argmax(dim=0, keepdim=True)`` for a ``[C, H, W]`` tensor, computed as a
    running maximum over the C planes (contiguous passes; same result, NaN and ties too).
    Logits with the classes innermost in memory (a channels-last head's) are torch's own
    argmax, which reduces a contiguous run there."""
    if logits.stride(0) == 1 and logits.shape[0] > 1:
        return logits.argmax(dim=0, keepdim=True)
    best = logits[0].clone()
    index = torch.zeros(logits.shape[1:], dtype=torch.long, device=logits.device)
    greater = torch.empty(logits.shape[1:], dtype=torch.bool, device=logits.device)
    for c in range(1, logits.shape[0]):
        torch.gt(logits[c], best, out=greater)  # strictly: the first of equal maxima wins
        index.masked_fill_(greater, c)
        torch.maximum(best, logits[c], out=best)  # NaN propagates into ``best`` ...
    nan = torch.isnan(best)
    if nan.any():  # ... and where it did, torch's argmax picks the first NaN: do as it does
        index[nan] = logits[:, nan].argmax(dim=0)
    return index.unsqueeze(0)


def _fast_route_applies(seg_logits, data_samples):
    """Whether the fast version computes what mmseg's would, and faster: data samples given,
    several classes, no gradients, logits on the CPU (on a GPU torch's argmax is one kernel,
    the running maximum one per class), and per image no padding, no flip and no resize."""
    if (data_samples is None or seg_logits.shape[1] < 2 or torch.is_grad_enabled()
            or seg_logits.device.type != 'cpu'):
        return False
    height, width = seg_logits.shape[2:]
    for sample in data_samples:
        meta = sample.metainfo
        padding = meta.get('img_padding_size', meta.get('padding_size', [0] * 4))
        if any(padding) or meta.get('flip') or tuple(meta['ori_shape'][:2]) != (height, width):
            return False
    return True


def fast_postprocess_result(self, seg_logits, data_samples=None):
    """``BaseSegmentor.postprocess_result`` without the same-size resize and with
    :func:`argmax_over_channels`; any other case goes to mmseg's method."""
    if not _fast_route_applies(seg_logits, data_samples):
        return type(self).postprocess_result(self, seg_logits, data_samples)
    from mmengine.structures import PixelData
    for i, sample in enumerate(data_samples):
        logits = seg_logits[i]
        sample.set_data(dict(seg_logits=PixelData(data=logits),
                             pred_sem_seg=PixelData(data=argmax_over_channels(logits))))
    return data_samples


def install(segmentor):
    """Give this mmseg segmentor instance the fast ``postprocess_result``."""
    segmentor.postprocess_result = types.MethodType(fast_postprocess_result, segmentor)
    return segmentor


__all__ = ['argmax_over_channels', 'fast_postprocess_result', 'install']
