"""The inference fast path: ``convert_for_inference(model)`` returns the same model doing less work.

``tools/test.py --fuse-conv-bn`` runs it (mmdet's flag of that name folds BN only; here BN
folding is the first of six rewrites). ``fuse_for_inference`` is its old, deprecated name. What it guarantees: in float64 every
spike is identical to the unfused model's and the outputs agree to rounding (1e-6 on the
golden inputs; ``tests/test_deploy/test_convert_for_inference.py``, also for Spikformer, SDT v1 and QKFormer). In
float32 the rewrites round differently (folded BN, Winograd), so a spike whose input lies
next to a quantiser level or threshold may move: the spikes of a float32 model may differ
from the unfused float32 model's (docs/en/user_guides/fast_path.md, "What float32 does to spikes"; the demo detector's
mAP agrees within 0.01, ``tests/test_models/test_detector.py``).
What it rewrites, found by profiling the s-size SRB backbone at 800x1216 (eval, no grad;
``tools/analysis/benchmark_backbone.py --fast-path --profile``) and the full models
(``tools/analysis/benchmark.py --fast-path --profile``):

1. **BatchNorm folded into the conv before it** (eval statistics; ``w' = w * a``,
   ``b' = (b - mean) * a + beta`` with ``a = gamma / sqrt(var + eps)``), by torch's
   ``fuse_conv_bn_weights`` over mmcv's walk (:mod:`.bn_folding`): the Conv2d -> BN pairs (also
   mmdet's ``ConvModule``s of stock necks and heads) and the Conv1d -> BN1d pairs of the
   transformer MLP. The BN becomes ``nn.Identity``.
2. **The integer quantiser in one buffer, without autograd state.** Out of place it was three
   element-wise passes with two fresh allocations (``clamp``, ``round``, ``mul``); on large
   maps the allocations -- fresh pages the kernel must zero -- cost more than the arithmetic.
   In no-grad mode a fused quantiser clamps, rounds and scales in place: on the conv output it
   reads when nothing else reads that tensor (each block's ``switch_to_deploy`` names those
   of its neurons), else on one copy.
3. **Residual sums in place** (``branch += x``, the same numbers as ``x + branch``: float
   addition is commutative) in the backbone blocks, in no-grad mode; and **the attention's
   last product transposed** (``SpikeDrivenAttention.transposed_product``), so that merging
   the heads is a view, not a copy.
4. **3x3 convolutions by Winograd's algorithm** on the CPU in float32 (``mmsnn.ops.winograd``,
   NNPACK): the same linear map from fewer multiplications, 2-3.5x faster per conv, with a
   coarser float32 rounding (``winograd=False`` keeps the direct convolution).
5. **mmseg's prediction step without wasted work** (:mod:`.seg_postprocess`): no resize of
   the logits to the size they already have, and the class argmax as a running maximum.
6. **RoIAlign as matrix products**: every mmcv ``RoIAlign`` with average pooling becomes a
   ``SeparableRoIAlign`` (``mmsnn.ops.roi_align``: per RoI ``Ay @ window @ Ax^T``, BLAS on the
   channels-last map instead of mmcv's single-threaded CPU kernel; the same maths, float64
   within 1e-12 of mmcv), in no-grad mode.

7. **Convs fed by spikes as exact int8 products of the spike counts** on a CPU with AMX
   (:mod:`mmsnn.ops.count_conv`), in float32: here, in the parts that stay eager, only the
   convs with a kernel above 1x1 from 128 channels or more (the RPN, mask and seg heads' 3x3
   convs: the conversion to counts and the limbs' sum are passes of their own,
   which such a product outweighs); the parts left to the compiler get theirs from
   :func:`mmsnn.engine.compile.compile_for_inference`. Found by one probe forward of a
   random 128x128 image (``extract_feat``, then the RPN or decode head) and of random RoI
   features through the bbox and mask heads. Also the ``nn.Linear`` layers fed by spikes that
   narrow 2x or more from 128 features or more (the bbox head's first shared fc).

4-7 replace CPU kernels and are installed only on a model whose parameters and buffers are
all on the CPU: on a GPU each would replace one fused CUDA kernel by several launches (the
RoIAlign by a Python loop of per-RoI products with host syncs, the argmax by one pass per
class). Freed-memory reuse (:func:`mmsnn.deploy.keep_freed_memory`, a process-wide glibc setting)
is not part of this function: an inference process asks for it (``tools/test.py
--keep-freed-memory``).

With gradients enabled (an ERF probe of a fused model) every module takes its ordinary path,
so autograd never sees an in-place change. The fused model is for inference only: its BN
layers are gone, so ``.train()`` on it (or on a part of it that lost a BN) raises
:class:`~mmsnn.utils.errors.MMSNNUserError`; it is returned in eval mode.

How: 2-3 are the blocks' own business: every mmsnn block and neuron that has an inference
form has a ``switch_to_deploy()`` method (as mmpretrain's blocks do) that rewrites itself;
:func:`convert_for_inference` walks the modules and calls it. 1 and 4-6 replace or patch
modules that are not mmsnn's (torch convs and BNs, mmcv's RoIAlign, mmseg's segmentor), so
this module does them.
"""
import itertools
import types

import torch.nn as nn
from mmseg.models.segmentors import BaseSegmentor

from ..ops.roi_align import swap_roi_align
from ..ops.winograd import to_winograd
from ..utils.errors import MMSNNUserError
from . import seg_postprocess
from .allocator import keep_freed_memory
from .bn_folding import fold_conv_bn


def train(self, mode=True):
    """``nn.Module.train`` of a converted model (bound to the instance by
    :func:`convert_for_inference`): ``eval()`` / ``train(False)`` work, training is refused."""
    if mode:
        raise MMSNNUserError(
            f'{type(self).__name__} was fused for inference (convert_for_inference / '
            '--fuse-conv-bn): its BatchNorm layers are folded into the convs, so it cannot be '
            'trained; train a model built from the config and convert it after training')
    return type(self).train(self, False)


def on_cpu(model):
    """Whether every parameter and buffer of ``model`` is on the CPU."""
    return all(t.device.type == 'cpu' for t in itertools.chain(model.parameters(),
                                                                 model.buffers()))


def _refuse_training(model, folded):
    """Bind :func:`train` to ``model`` and to every module above a folded BN (their
    ``.train()`` would train the network without it)."""
    owners = {''} | {'.'.join(name.split('.')[:i])
                     for name in folded for i in range(1, name.count('.') + 1)}
    for name, m in model.named_modules():
        if name in owners:
            m.train = types.MethodType(train, m)


def switch_to_deploy(model):
    """Call ``switch_to_deploy()`` of every module of ``model`` that has one (parents before
    children). Returns ``model``."""
    for m in list(model.modules()):
        if callable(getattr(m, 'switch_to_deploy', None)):
            m.switch_to_deploy()
    return model


def _install_count_convs(model, leave, force):
    """Rewrite 7 (see the module docstring): the names of the convs made count convs."""
    import torch

    from ..ops.count_conv import install_count_convs, probe_image
    image = probe_image(model)
    if image is None:
        return []
    run = None  # a bare backbone: its forward
    if callable(getattr(model, 'extract_feat', None)):
        heads = [getattr(model, name) for name in ('rpn_head', 'decode_head')
                 if isinstance(getattr(model, name, None), nn.Module)]

        roi_head = getattr(model, 'roi_head', None)
        # the RoI heads read pooled RoI features: probed with random ones of their size
        roi_parts = [h for h in (getattr(roi_head, 'bbox_head', None),
                                 getattr(roi_head, 'mask_head', None))
                     if isinstance(h, nn.Module) and hasattr(h, 'roi_feat_size')
                     and isinstance(getattr(h, 'in_channels', None), int)]

        def run(x):
            feats = model.extract_feat(x)
            outs = [head(feats) for head in heads]
            for h in roi_parts:
                size = h.roi_feat_size
                size = (size, size) if isinstance(size, int) else tuple(size)
                outs.append(h(torch.rand(2, h.in_channels, *size)))
            return outs
    names, _ = install_count_convs(model, image, force=force, compiled=False, run=run,
                                   skip=tuple(leave))
    # a module whose code takes any layout (``count_conv_channels_last``, e.g. the seg head:
    # quantisers, bilinear upsampling, sums, a 1x1 classifier) gets its count convs' results
    # channels-last, without the transpose: its upsamplings are then faster too (one-off timings)
    for m in model.modules():
        if getattr(m, 'count_conv_channels_last', False):
            for conv in m.modules():
                if hasattr(conv, 'channels_last_output'):
                    conv.channels_last_output = True
    return names


def convert_for_inference(model, reuse_memory=False, winograd=True, leave=(), count_convs=None):
    """Turn ``model`` (in place) into its inference fast path and return it in eval mode.

    Any nn.Module containing mmsnn parts: a ``MetaSDT``, ``Spikformer``, ``SDTv1`` or
    ``QKFormer`` backbone, an mmdet detector or an mmseg segmentor built from mmsnn configs, or
    a plain torch model (then only BN folding applies). Load the trained weights *before*
    calling it: folding uses the BN running statistics. Put the model on its device first:
    the CPU-only rewrites (Winograd, RoIAlign as products, the seg argmax) are installed only
    on a CPU model. In float64 the spikes are those of the unconverted model; in float32 they
    may differ (see the module docstring). The result refuses ``.train()``.

    Args:
        model (nn.Module): the model; changed in place.
        reuse_memory (bool): also make this process keep freed memory for reuse
            (:func:`mmsnn.deploy.keep_freed_memory`), if the model is on the CPU. A
            process-wide, irreversible glibc setting: the process keeps its peak heap until
            it exits. Default: False (call ``keep_freed_memory`` yourself in an inference
            process, as ``tools/test.py --keep-freed-memory`` does).
        winograd (bool): compute the 3x3 convolutions by Winograd's algorithm on the CPU in
            float32 (:mod:`mmsnn.ops.winograd`, NNPACK): the same linear map, with a float32
            rounding about 10x coarser than the direct convolution's. Default: True.
        leave (tuple[str]): names of children of ``model`` whose structure stays as built,
            e.g. ``('backbone', 'neck')`` when they are compiled next (``tools/test.py
            --fuse-conv-bn --compile``): the compiler fuses BN, quantiser and residual sums
            itself, and the hand-written forms slowed the compiled graph down on the Xeon
            (in-place writes), so rewrites 1-3 and 5-6 apply only to the parts that stay
            eager. The convolution kernel (4, Winograd) is chosen in these parts too: the
            compiler calls whatever conv it is given, and without Winograd in the neck the
            compiled Mask R-CNN was 1.4x slower than the fast path alone on an AMD EPYC
            [avx2] (docs/en/benchmarks.md). Default: none.
        count_convs (bool | None): rewrite 7, the convs fed by spikes as int8 products of the
            counts, in the parts not left out. None (default): on a float32 CPU model where it
            pays (a CPU with AMX); True: also elsewhere; False: never.
    """
    cpu = on_cpu(model)
    if reuse_memory and cpu:
        keep_freed_memory()
    if getattr(model, 'fused_for_inference', False):
        return model
    missing = [name for name in leave if not isinstance(getattr(model, name, None), nn.Module)]
    if missing:
        raise MMSNNUserError(f'convert_for_inference(leave={tuple(leave)}): {type(model).__name__}'
                             f' has no part named {", ".join(missing)}; name children of it, '
                             f'e.g. {", ".join(n for n, _ in model.named_children())}')
    model.eval()
    bns = {name for name, m in model.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    # (prefix, module) pairs to rewrite: the whole model, or its children not left out
    parts = [(f'{name}.', child) for name, child in model.named_children()
             if name not in leave] if leave else [('', model)]
    model.separable_roi_aligns = []
    for prefix, part in parts:
        fold_conv_bn(part)
        switch_to_deploy(part)  # the mmsnn blocks and neurons rewrite themselves
        if cpu:  # mmcv RoIAlign (avg) -> SeparableRoIAlign; names of the replaced modules
            model.separable_roi_aligns += [prefix + name for name in swap_roi_align(part)]
    if cpu:  # the segmentor's prediction step (the top model's method: never left out)
        for m in model.modules():
            if isinstance(m, BaseSegmentor):
                seg_postprocess.install(m)
    # before Winograd, which leaves the count convs alone
    model.count_convs = _install_count_convs(model, leave, bool(count_convs)) \
        if cpu and count_convs is not False else []
    # the convolution kernel is chosen in the whole model, the parts left as built included
    # (see leave); names of the replaced convs
    model.winograd_convs = to_winograd(model) if winograd and cpu else []
    left = {name for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    model.fused_for_inference = True
    model.folded_bn = sorted(bns - left)  # names of the BN layers that were folded
    _refuse_training(model, model.folded_bn)
    return model.eval()  # also the nn.Identity modules that took the BNs' places


__all__ = ['convert_for_inference', 'switch_to_deploy', 'on_cpu']
