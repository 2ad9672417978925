"""Spikformer (Zhou et al., ICLR 2023) as in the ST-ERF reference (``spikformer.py``,
``Spiking_vit`` / ``vit_snn``), with its checkpoint key filter.

Five stage taps (index them with ``out_indices``)::

    tap  modules (reference names)                             channels  stride
    0    patch_embed.proj_conv/bn/lif + max-pool                E/8       2
    1    patch_embed.proj_conv1/bn1/lif1 + max-pool             E/4       4
    2    patch_embed.proj_conv2/bn2/lif2 + max-pool             E/2       8
    3    patch_embed.proj_conv3/bn3/lif3 + max-pool, rpe_*      E         16
    4    block.0 .. block.{D-1}                                 E         16

Taps 0..2 and the tokens of tap 3 are spikes; tap 3 (``x_feat`` + RPE spikes) and tap 4 (the
residual stream) hold small integers. Detection uses taps (1, 2, 3, 4), segmentation
(0, 1, 2, 4), as for :class:`~mmsnn.models.MetaSDT`.

Choices where the reference is odd (see ``shared/docs/snn_transformers.md``):

* token selection: the reference scores the tokens in every block and runs attention and
  MLP on the top ``k*k`` only (``k = int(H_tok * k_value)``). On a square grid with
  ``k_value=1`` that is every token, i.e. the plain block; on a grid taller than wide the
  reference crashes, on a wider one it updates only ``H_tok**2`` tokens. Default here: the
  plain all-tokens block (``token_select=False``). ``token_select=True`` reproduces the
  reference's selection (with a clear error where it would crash), computed in the input's
  dtype (the reference's float32 kernel fails on float64) and with a 3x3 box sum instead of
  its dense C x C x 3 x 3 all-ones convolution (same values).
* the per-block ``norm1`` / ``norm2`` LayerNorms and ``qkv_mp`` are never used by the
  reference: not built here; :func:`checkpoint_filter_fn` drops their keys. ``drop_path``,
  ``qkv_bias``, ``qk_scale``, ``sr_ratios`` have no effect in the reference: not arguments.
* T is an argument (the reference hard-codes 4 in ``forward``).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import register
from .spiking_transformer_base import (TAP_STRIDES, MultiStepLIF, SpikingTransformerBackbone,
                                       apply_conv_bn, filter_reference_keys, merged)

#: published sizes: name -> (depth, embed_dims, num_heads); '8-512' is ``vit_snn`` of the
#: reference (29.69 M used parameters with the 1000-class head)
ARCH_SETTINGS = {'8-512': (8, 512, 8)}

#: reference keys of layers that are never run
UNUSED_KEYS = r'^block\.\d+\.norm[12]\.'


def checkpoint_filter_fn(state_dict, model=None):
    """Reference Spikformer state dict -> :class:`Spikformer` keys (timm-style filter).

    The names are the reference's; only the unused LayerNorms go (and the classifier
    ``head.*`` when ``model`` is given and has none).
    """
    return filter_reference_keys(state_dict, UNUSED_KEYS, model)


class SpikingTokenizer(nn.Module):
    """The reference's SPS: four conv3-BN-LIF-maxpool steps (widths E/8, E/4, E/2, E),
    then a conv3-BN-LIF relative position embedding added to the last step's spikes."""

    def __init__(self, in_channels, embed_dims):
        super().__init__()
        widths = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for i, suffix in enumerate(('', '1', '2', '3')):
            self.add_module(f'proj_conv{suffix}',
                            nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False))
            self.add_module(f'proj_bn{suffix}', nn.BatchNorm2d(widths[i + 1]))
            self.add_module(f'proj_lif{suffix}', MultiStepLIF())
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = MultiStepLIF()

    def forward(self, x, taps=None):
        """``x`` [T, B, C, H, W] -> [T, B, E, H/16, W/16]; appends the outputs of the four
        steps (strides 2, 4, 8, 16) to ``taps`` when given."""
        for suffix in ('', '1', '2', '3'):
            conv, bn = getattr(self, f'proj_conv{suffix}'), getattr(self, f'proj_bn{suffix}')
            x = getattr(self, f'proj_lif{suffix}')(apply_conv_bn(x, conv, bn))
            x = merged(self.maxpool, x)
            if taps is not None:
                taps.append(x)
        rpe = self.rpe_lif(apply_conv_bn(x, self.rpe_conv, self.rpe_bn))
        return rpe + x


class SpikingSelfAttention(nn.Module):
    """The reference's SSA: q, k, v = LIF(BN(1x1 Conv1d)), ``(q k^T v) * 0.125`` per head
    without softmax, LIF (threshold 0.5), 1x1 Conv1d with bias, BN, LIF.

    Args:
        dim (int): channels C.
        num_heads (int): heads h (C = h * d, channel c = head * d + j).
        scale (float): the reference's constant 0.125 (not 1/sqrt(d)).
        proj_lif_steps (str): 'time' (the membrane of ``proj_lif`` steps over T) or
            'folded' (over the merged ``T*B`` axis, index ``t*B + b``: the reference's
            QKFormer stage-3 bug, which mixes the samples of a batch).
    """

    def __init__(self, dim, num_heads=8, scale=0.125, proj_lif_steps='time'):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dims {dim} are not divisible by num_heads={num_heads}')
        if proj_lif_steps not in ('time', 'folded'):
            raise ValueError(f"proj_lif_steps must be 'time' or 'folded', got {proj_lif_steps!r}")
        self.num_heads = num_heads
        self.scale = scale
        self.proj_lif_steps = proj_lif_steps
        for name in ('q', 'k', 'v'):
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
        tokens = x.flatten(3)  # [T, B, C, N], token n = row * W + col

        def heads(name):  # LIF(BN(conv)) as [T, B, h, N, d]
            conv, bn = getattr(self, f'{name}_conv'), getattr(self, f'{name}_bn')
            s = getattr(self, f'{name}_lif')(apply_conv_bn(tokens, conv, bn))
            return s.reshape(T, B, h, C // h, -1).transpose(-1, -2)

        q, k, v = heads('q'), heads('k'), heads('v')
        # spikes are 0/1, so k^T v first (O(N d^2)) gives exactly the reference's numbers
        y = (q @ (k.transpose(-1, -2) @ v)) * self.scale
        y = self.attn_lif(y.transpose(-1, -2).reshape(T, B, C, -1))
        y = self.proj_bn(self.proj_conv(y.flatten(0, 1)))  # [T*B, C, N]
        if self.proj_lif_steps == 'folded':
            return self.proj_lif(y).reshape(T, B, C, H, W)
        return self.proj_lif(y.reshape(T, B, C, H, W))


class SpikingMLP(nn.Module):
    """The reference's MLP: (1x1 conv with bias, BN, LIF) twice, C -> hidden -> C."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1_conv = nn.Conv2d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc1_lif = MultiStepLIF()
        self.fc2_conv = nn.Conv2d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm2d(dim)
        self.fc2_lif = MultiStepLIF()

    def forward(self, x):
        x = self.fc1_lif(apply_conv_bn(x, self.fc1_conv, self.fc1_bn))
        return self.fc2_lif(apply_conv_bn(x, self.fc2_conv, self.fc2_bn))


def select_tokens(x, k):
    """Indices ``[B, k*k]`` of the tokens the reference's per-block selection keeps
    (top ``k*k`` of temporal change score + spatial saliency score), for ``x`` [T, B, C, H, W].
    """
    T, B, C, H, W = x.shape
    mean_c = x.mean(2)  # [T, B, H, W]
    temporal = (mean_c[1:] - mean_c[:-1]).abs().mean(0).flatten(1).softmax(-1)
    x_bar = x.mean(0)  # [B, C, H, W]
    # every channel of the reference's all-ones C x C x 3 x 3 conv (/9) is the 3x3 box sum
    # over all channels / 9: compute it once instead of C times
    local = F.avg_pool2d(x_bar.sum(1, keepdim=True), 3, 1, 1, count_include_pad=True)
    cos = F.cosine_similarity(x_bar, local.expand_as(x_bar), dim=1, eps=1e-6)
    spatial = (-cos).flatten(1).softmax(-1)
    return (temporal + spatial).topk(k * k, dim=-1).indices


class SpikformerBlock(nn.Module):
    """``x = x + attn(x); x = x + mlp(x)``; with ``k_value`` set, on the reference's
    selected tokens only (see the module docstring)."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, k_value=None, proj_lif_steps='time'):
        super().__init__()
        self.k_value = k_value
        self.attn = SpikingSelfAttention(dim, num_heads, proj_lif_steps=proj_lif_steps)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio))

    def _plain(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)

    def forward(self, x):
        if self.k_value is None:
            return self._plain(x)
        T, B, C, H, W = x.shape
        k = int(H * self.k_value)
        if k * k > H * W:
            raise ValueError(
                f'reference token selection keeps k*k = {k * k} of {H}x{W} tokens '
                f'(k = int({H} * k_value {self.k_value})), more than there are; the reference '
                'crashes here. Use token_select=False (all tokens) or a grid at least as '
                'wide as tall')
        idx = select_tokens(x, k)[None, :, None, :].expand(T, B, C, k * k)
        tokens = x.flatten(3)
        chosen = self._plain(tokens.gather(3, idx).reshape(T, B, C, k, k))
        return tokens.scatter(3, idx, chosen.flatten(3)).reshape(x.shape)


@register('model')
class Spikformer(SpikingTransformerBackbone):
    """Spikformer backbone (time-first, multi-step LIF; see the module docstring).

    Args:
        arch (str): a key of ``ARCH_SETTINGS`` ('8-512' = the reference's ``vit_snn``);
            ``depth`` / ``embed_dims`` / ``num_heads`` override it.
        embed_dims (int | None): width E (a multiple of 8 and of ``num_heads``).
        depth (int | None): number of blocks D.
        num_heads (int | None): attention heads.
        mlp_ratio (float): MLP expansion.
        in_channels (int): input channels.
        T (int): time steps (the image is repeated T times; a [T, B, C, H, W] input gives one
            frame per step).
        out_indices (tuple[int]): stage taps to return, 0..4 (strides 2, 4, 8, 16, 16).
        token_select (bool): reproduce the reference's per-block token selection
            (default False: every block sees all tokens, which is what the reference does on
            square grids).
        k_values (list[float] | None): per-block ``k_value`` of the selection (default 1).
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

    def __init__(self, arch='8-512', embed_dims=None, depth=None, num_heads=None,
                 mlp_ratio=4.0, in_channels=3, T=4, out_indices=(1, 2, 3, 4),
                 token_select=False, k_values=None, num_classes=0, keep_time=False,
                 frozen_stages=-1, norm_eval=False, init_cfg=None):
        super().__init__(T=T, out_indices=out_indices, num_classes=num_classes,
                         keep_time=keep_time, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, init_cfg=init_cfg)
        depth, embed_dims, num_heads = self._resolve_arch(
            ARCH_SETTINGS, arch, depth, embed_dims, num_heads)
        if k_values is None:
            k_values = [1] * depth
        if token_select and len(k_values) < depth:
            raise ValueError(f'k_values has {len(k_values)} entries for {depth} blocks')
        self.token_select = token_select
        self.tap_channels = (embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims,
                             embed_dims)
        self.tap_strides = TAP_STRIDES
        self.patch_embed = SpikingTokenizer(in_channels, embed_dims)
        self.block = nn.ModuleList([
            SpikformerBlock(embed_dims, num_heads, mlp_ratio,
                            k_value=k_values[i] if token_select else None)
            for i in range(depth)])
        if self.num_classes:
            self.head = nn.Linear(embed_dims, self.num_classes)
        self._tap_modules = (
            ('patch_embed.proj_conv', 'patch_embed.proj_bn'),
            ('patch_embed.proj_conv1', 'patch_embed.proj_bn1'),
            ('patch_embed.proj_conv2', 'patch_embed.proj_bn2'),
            ('patch_embed.proj_conv3', 'patch_embed.proj_bn3', 'patch_embed.rpe_conv',
             'patch_embed.rpe_bn'),
            ('block',))
        self._freeze_stages()

    @classmethod
    def from_reference_config(cls, config, T=4, **overrides):
        """Build from the reference constructor's kwargs (``Spiking_vit(**config)``; the
        reference's T is fixed at 4). ``overrides`` are our own arguments."""
        kw = dict(embed_dims=config['embed_dims'], depth=config['depths'],
                  num_heads=config['num_heads'], mlp_ratio=config['mlp_ratios'],
                  in_channels=config.get('in_channels', 3), T=T,
                  num_classes=config.get('num_classes', 1000),
                  k_values=config.get('k_values'), out_indices=(0, 1, 2, 3, 4))
        kw.update(overrides)
        return cls(arch=None, **kw)

    def _forward_taps(self, x, last):
        taps = []
        x = self.patch_embed(x, taps)
        taps[3] = x  # tap 3 is the tokenizer's output (pooled spikes + RPE spikes)
        if last == 4:
            for blk in self.block:
                x = blk(x)
            taps.append(x)
        return taps

    def _forward_head(self, x):
        return self.head(x.flatten(3).mean(3).mean(0))
