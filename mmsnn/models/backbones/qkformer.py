"""QKFormer (Zhou et al., NeurIPS 2024) as in the ST-ERF reference (``qkformer.py``,
``hierarchical_spiking_transformer`` / ``QKFormer_10_384``), with its checkpoint key filter.

A three-stage hierarchy of widths E/4, E/2, E with 1, 2 and D-3 blocks. Five stage taps
(index them with ``out_indices``)::

    tap  modules (reference names)                             channels  stride
    0    patch_embed1.proj_conv/bn + max-pool + proj_lif        E/8       2
    1    patch_embed1 (rest), stage1                            E/4       4
    2    patch_embed2, stage2                                   E/2       8
    3    patch_embed3                                           E         16
    4    stage3                                                 E         16

Tap 0 is spikes; the others hold small integers (sums of spike maps). Detection uses taps
(1, 2, 3, 4), segmentation (0, 1, 2, 4), as for :class:`~mmsnn.models.MetaSDT`.

Choices where the reference is odd (see ``shared/docs/snn_transformers.md``):

* stage 3's attention (Spikformer's SSA) feeds ``proj_lif`` the merged ``[T*B, C, N]``
  tensor, so the membrane steps through ``(t0, b0), (t0, b1), ..., (t1, b0), ...``: the
  output of one image depends on the other images of the batch (correct only at batch 1).
  Default here: ``proj_lif`` steps over T (``stage3_proj_lif_steps='time'``; the golden
  file's ``variants.proj_lif_over_T``). ``'folded'`` reproduces the reference's order.
  Released checkpoints load either way (no parameter depends on it); at batch 1 the two
  coincide.
* nothing unused is built by the reference, so :func:`checkpoint_filter_fn` only drops the
  classifier when the model has none.
* T defaults to 4 (the reference factory's default is 1; its ERF script passes 4).
"""
import torch.nn as nn

from ...registry import register
from .spikformer import SpikformerBlock, SpikingMLP
from .spiking_transformer_base import (TAP_STRIDES, MultiStepLIF, SpikingTransformerBackbone,
                                       apply_conv_bn, filter_reference_keys, merged)

#: published sizes: name -> (depth, embed_dims, num_heads); '10-384' is ``QKFormer_10_384``
#: (16.47 M parameters with the 1000-class head)
ARCH_SETTINGS = {'10-384': (10, 384, 6)}


def checkpoint_filter_fn(state_dict, model=None):
    """Reference QKFormer state dict -> :class:`QKFormer` keys (timm-style filter): the
    names are the reference's and every layer is used, so only the classifier ``head.*``
    goes, when ``model`` is given and has none."""
    return filter_reference_keys(state_dict, None, model)


class InitialPatchEmbed(nn.Module):
    """PatchEmbedInit: ``a = LIF(MP(BN(conv3)))`` (stride 2, Ei/2), ``b = LIF(BN(conv3(
    LIF(MP(BN(conv3(a)))))))`` (stride 4, Ei), plus ``LIF(BN(1x1 stride-2 conv(a)))``."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid = out_channels // 2
        self.proj_conv = nn.Conv2d(in_channels, mid, 3, 1, 1, bias=False)
        self.proj_bn = nn.BatchNorm2d(mid)
        self.proj_lif = MultiStepLIF()
        self.proj1_conv = nn.Conv2d(mid, out_channels, 3, 1, 1, bias=False)
        self.proj1_bn = nn.BatchNorm2d(out_channels)
        self.proj1_lif = MultiStepLIF()
        self.proj2_conv = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.proj2_bn = nn.BatchNorm2d(out_channels)
        self.proj2_lif = MultiStepLIF()
        self.proj_res_conv = nn.Conv2d(mid, out_channels, 1, 2, bias=False)
        self.proj_res_bn = nn.BatchNorm2d(out_channels)
        self.proj_res_lif = MultiStepLIF()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x, taps=None):
        a = self.proj_lif(merged(self.maxpool, apply_conv_bn(x, self.proj_conv, self.proj_bn)))
        if taps is not None:
            taps.append(a)
        b = self.proj1_lif(merged(self.maxpool, apply_conv_bn(a, self.proj1_conv, self.proj1_bn)))
        b = self.proj2_lif(apply_conv_bn(b, self.proj2_conv, self.proj2_bn))
        return b + self.proj_res_lif(apply_conv_bn(a, self.proj_res_conv, self.proj_res_bn))


class StagePatchEmbed(nn.Module):
    """PatchEmbeddingStage (stride 2, width ``in -> out``; its input is integer-valued, not
    spikes): ``LIF(BN(conv3(LIF(MP(BN(conv3(x)))))))`` + ``LIF(BN(1x1 stride-2 conv(x)))``."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj3_conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.proj3_bn = nn.BatchNorm2d(out_channels)
        self.proj3_lif = MultiStepLIF()
        self.proj4_conv = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.proj4_bn = nn.BatchNorm2d(out_channels)
        self.proj4_lif = MultiStepLIF()
        self.proj_res_conv = nn.Conv2d(in_channels, out_channels, 1, 2, bias=False)
        self.proj_res_bn = nn.BatchNorm2d(out_channels)
        self.proj_res_lif = MultiStepLIF()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x):
        a = self.proj3_lif(merged(self.maxpool, apply_conv_bn(x, self.proj3_conv, self.proj3_bn)))
        a = self.proj4_lif(apply_conv_bn(a, self.proj4_conv, self.proj4_bn))
        return a + self.proj_res_lif(apply_conv_bn(x, self.proj_res_conv, self.proj_res_bn))


class TokenQKAttention(nn.Module):
    """Token_QK_Attention: q, k = LIF(BN(1x1 Conv1d)); per head and token the mask
    ``LIF_0.5(sum over the head's channels of q)`` gates k; 1x1 Conv1d with bias, BN, LIF."""

    def __init__(self, dim, num_heads=8):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'width {dim} is not divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        for name in ('q', 'k'):
            self.add_module(f'{name}_conv', nn.Conv1d(dim, dim, 1, bias=False))
            self.add_module(f'{name}_bn', nn.BatchNorm1d(dim))
            self.add_module(f'{name}_lif', MultiStepLIF())
        self.attn_lif = MultiStepLIF(v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, 1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = MultiStepLIF()

    def forward(self, x):
        T, B, C, H, W = x.shape
        h = self.num_heads
        tokens = x.flatten(3)  # [T, B, C, N]
        q = self.q_lif(apply_conv_bn(tokens, self.q_conv, self.q_bn)).reshape(T, B, h, C // h, -1)
        k = self.k_lif(apply_conv_bn(tokens, self.k_conv, self.k_bn)).reshape(T, B, h, C // h, -1)
        mask = self.attn_lif(q.sum(dim=3, keepdim=True))  # [T, B, h, 1, N]
        y = (mask * k).reshape(T, B, C, -1)
        return self.proj_lif(apply_conv_bn(y, self.proj_conv, self.proj_bn).reshape(x.shape))


class TokenSpikingTransformer(nn.Module):
    """Stage 1/2 block: ``x = x + tssa(x); x = x + mlp(x)``."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.tssa = TokenQKAttention(dim, num_heads)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.tssa(x)
        return x + self.mlp(x)


@register('model')
class QKFormer(SpikingTransformerBackbone):
    """QKFormer backbone (time-first, multi-step LIF; see the module docstring).

    Args:
        arch (str): a key of ``ARCH_SETTINGS`` ('10-384' = ``QKFormer_10_384``);
            ``depth`` / ``embed_dims`` / ``num_heads`` override it.
        embed_dims (int | None): width E of stage 3 (stages 1 and 2 have E/4 and E/2; a
            multiple of 8, and E/4 a multiple of ``num_heads``).
        depth (int | None): total depth D (stage 3 holds D - 3 blocks; D >= 4).
        num_heads (int | None): attention heads (every stage).
        mlp_ratio (float): MLP expansion.
        in_channels (int): input channels.
        T (int): time steps (the image is repeated T times; a [T, B, C, H, W] input gives one
            frame per step).
        stage3_proj_lif_steps (str): 'time' (default) or 'folded' (the reference: stage 3's
            ``proj_lif`` steps over the merged T*B axis and mixes the batch).
        out_indices (tuple[int]): stage taps to return, 0..4 (strides 2, 4, 8, 16, 16).
        num_classes (int): > 0 builds the reference's classifier ``head`` (mean over tokens
            and time, Linear) for :meth:`classify`; 0 (default) for det/seg.
        keep_time (bool): return [T, B, C, h, w] taps instead of the mean over time.
        frozen_stages (int): freeze the layers of taps 0..frozen_stages (-1: none).
        norm_eval (bool): keep BatchNorm in eval mode while training.
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)`` loads a
            reference (ImageNet) or mmsnn checkpoint through the one converter
            (:func:`~mmsnn.models.reference_conversion.load_pretrained`, which applies
            :func:`checkpoint_filter_fn`).
    """

    checkpoint_filter_fn = staticmethod(checkpoint_filter_fn)

    def __init__(self, arch='10-384', embed_dims=None, depth=None, num_heads=None,
                 mlp_ratio=4.0, in_channels=3, T=4, stage3_proj_lif_steps='time',
                 out_indices=(1, 2, 3, 4), num_classes=0, keep_time=False, frozen_stages=-1,
                 norm_eval=False, init_cfg=None):
        super().__init__(T=T, out_indices=out_indices, num_classes=num_classes,
                         keep_time=keep_time, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, init_cfg=init_cfg)
        depth, embed_dims, num_heads = self._resolve_arch(
            ARCH_SETTINGS, arch, depth, embed_dims, num_heads)
        if depth < 4:
            raise ValueError(f'QKFormer depth must be >= 4 (1 + 2 + depth-3 blocks), got {depth}')
        E1, E2, E3 = embed_dims // 4, embed_dims // 2, embed_dims
        self.tap_channels = (embed_dims // 8, E1, E2, E3, E3)
        self.tap_strides = TAP_STRIDES
        self.patch_embed1 = InitialPatchEmbed(in_channels, E1)
        self.stage1 = nn.ModuleList([TokenSpikingTransformer(E1, num_heads, mlp_ratio)])
        self.patch_embed2 = StagePatchEmbed(E1, E2)
        self.stage2 = nn.ModuleList([TokenSpikingTransformer(E2, num_heads, mlp_ratio)
                                     for _ in range(2)])
        self.patch_embed3 = StagePatchEmbed(E2, E3)
        self.stage3 = nn.ModuleList([
            SpikformerBlock(E3, num_heads, mlp_ratio, proj_lif_steps=stage3_proj_lif_steps)
            for _ in range(depth - 3)])
        if self.num_classes:
            self.head = nn.Linear(E3, self.num_classes)
        self._tap_modules = (
            ('patch_embed1.proj_conv', 'patch_embed1.proj_bn'),
            ('patch_embed1', 'stage1'),
            ('patch_embed2', 'stage2'),
            ('patch_embed3',),
            ('stage3',))
        self._freeze_stages()

    @classmethod
    def from_reference_config(cls, config, **overrides):
        """Build from the reference constructor's kwargs
        (``hierarchical_spiking_transformer(**config)``). ``overrides`` are our own
        arguments, e.g. ``stage3_proj_lif_steps='folded'`` for the reference's numbers."""
        kw = dict(embed_dims=config['embed_dims'], depth=config['depths'],
                  num_heads=config['num_heads'], mlp_ratio=config['mlp_ratios'],
                  in_channels=config['in_channels'], T=config.get('T', 1),
                  num_classes=config.get('num_classes', 1000), out_indices=(0, 1, 2, 3, 4))
        kw.update(overrides)
        return cls(arch=None, **kw)

    def _forward_taps(self, x, last):
        taps = []
        x = self.patch_embed1(x, taps)
        stages = ([*self.stage1], [self.patch_embed2, *self.stage2], [self.patch_embed3],
                  [*self.stage3])  # what runs between tap k-1 and tap k, k = 1..4
        for modules in stages[:last]:
            for module in modules:
                x = module(x)
            taps.append(x)
        return taps

    def _forward_head(self, x):
        return self.head(x.flatten(3).mean(3).mean(0))
