"""Spike-driven Transformer v1 (Yao et al., NeurIPS 2023) as in the ST-ERF reference
(``sd_former_v1.py``, ``SpikeDrivenTransformer`` / ``sdt``), with its checkpoint key filter.

Five stage taps (index them with ``out_indices``)::

    tap  modules (reference names)                             channels  stride
    0    patch_embed.proj_conv/bn/lif + max-pool                E/8       2
    1    patch_embed.proj_conv1/bn1/lif1 + max-pool             E/4       4
    2    patch_embed.proj_conv2/bn2/lif2 + max-pool             E/2       8
    3    patch_embed.proj_conv3/bn3 + max-pool, proj_lif3, rpe   E         16
    4    block.0 .. block.{D-1}                                 E         16

(strides with ``pooling_stat='1111'``; a '0' at position i skips max-pool i and halves the
strides from tap i on). Taps 0..2 are spikes; taps 3 and 4 are the real-valued residual
stream (membrane shortcut: spikes only in front of each conv). Detection uses taps
(1, 2, 3, 4), segmentation (0, 1, 2, 4), as for :class:`~mmsnn.models.MetaSDT`.

Choices where the reference is odd (see ``shared/docs/snn_transformers.md``):

* ``rpe_lif``, ``attn_lif``, the ``talking_heads`` Conv1d, ``scale`` and ``mode`` are built
  by the reference but never run: not built here; :func:`checkpoint_filter_fn` drops the
  ``talking_heads`` weights.
* a 5-D input is ``[T, B, C, H, W]`` (time first, as everywhere in mmsnn); the reference
  reads ``[B, T, ...]``. ``dvs_mode`` (Erode pooling), ``spike_mode='plif'`` and ``TET`` are
  not implemented (a clear error); ``drop_path_rate > 0`` crashes in the reference and is not
  an argument.
* :meth:`SDTv1.classify` returns the logits only (the reference returns ``(logits, hook)``).
"""
import torch.nn as nn

from ...registry import register
from .spiking_transformer_base import (MultiStepLIF, SpikingTransformerBackbone, apply_conv_bn,
                                       filter_reference_keys, merged)

#: published sizes: name -> (depth, embed_dims, num_heads); '8-384' is the ImageNet model
#: the reference ERF script builds (16.82 M parameters with the 1000-class head, of which
#: 512 are the unused talking-heads weights)
ARCH_SETTINGS = {'8-384': (8, 384, 8)}

#: reference keys of layers that are never run
UNUSED_KEYS = r'^block\.\d+\.attn\.talking_heads\.'


def checkpoint_filter_fn(state_dict, model=None):
    """Reference SDT v1 state dict -> :class:`SDTv1` keys (timm-style filter).

    The names are the reference's; only the unused talking-heads convs go (and the
    classifier ``head.*`` when ``model`` is given and has none).
    """
    return filter_reference_keys(state_dict, UNUSED_KEYS, model)


class MembraneShortcutTokenizer(nn.Module):
    """The reference's MS_SPS: conv3-BN-LIF-maxpool three times (E/8, E/4, E/2), then
    conv3-BN-maxpool (E, real-valued ``x_feat``) and ``x_feat + BN(conv3(LIF(x_feat)))``."""

    def __init__(self, in_channels, embed_dims, pooling_stat='1111'):
        super().__init__()
        widths = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        self.pooling = [c == '1' for c in pooling_stat]
        for i, suffix in enumerate(('', '1', '2', '3')):
            self.add_module(f'proj_conv{suffix}',
                            nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False))
            self.add_module(f'proj_bn{suffix}', nn.BatchNorm2d(widths[i + 1]))
            self.add_module(f'proj_lif{suffix}', MultiStepLIF())
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)

    def forward(self, x, taps=None):
        """``x`` [T, B, C, H, W] -> [T, B, E, H/16, W/16]; appends the outputs of the four
        steps (strides 2, 4, 8, 16) to ``taps`` when given."""
        for i, suffix in enumerate(('', '1', '2', '3')):
            conv, bn = getattr(self, f'proj_conv{suffix}'), getattr(self, f'proj_bn{suffix}')
            lif = getattr(self, f'proj_lif{suffix}')
            x = apply_conv_bn(x, conv, bn)
            if i < 3:
                x = lif(x)
            if self.pooling[i]:
                x = merged(self.maxpool, x)
            if taps is not None:
                taps.append(x)
        x_feat = x  # real-valued: step 3 pools before its LIF
        return apply_conv_bn(self.proj_lif3(x_feat), self.rpe_conv, self.rpe_bn) + x_feat


class SpikeDrivenSelfAttention(nn.Module):
    """The reference's MS_SSA_Conv (with its residual): ``s = LIF(x)``; q, k, v =
    LIF(BN(1x1 conv(s))); per head ``kv = LIF_0.5(sum over tokens of k * v)``;
    ``x + BN(1x1 conv with bias(q * kv))``."""

    def __init__(self, dim, num_heads=8):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dims {dim} are not divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.shortcut_lif = MultiStepLIF()
        for name in ('q', 'k', 'v'):
            self.add_module(f'{name}_conv', nn.Conv2d(dim, dim, 1, bias=False))
            self.add_module(f'{name}_bn', nn.BatchNorm2d(dim))
            self.add_module(f'{name}_lif', MultiStepLIF())
        self.talking_heads_lif = MultiStepLIF(v_threshold=0.5)
        self.proj_conv = nn.Conv2d(dim, dim, 1)
        self.proj_bn = nn.BatchNorm2d(dim)

    def forward(self, x):
        T, B, C, H, W = x.shape
        h = self.num_heads
        s = self.shortcut_lif(x)

        def heads(name):  # LIF(BN(conv(s))) as [T, B, h, N, d]
            conv, bn = getattr(self, f'{name}_conv'), getattr(self, f'{name}_bn')
            y = getattr(self, f'{name}_lif')(apply_conv_bn(s, conv, bn))
            return y.flatten(3).reshape(T, B, h, C // h, -1).transpose(-1, -2)

        q, k, v = heads('q'), heads('k'), heads('v')
        kv = self.talking_heads_lif((k * v).sum(dim=-2, keepdim=True))  # [T, B, h, 1, d]
        y = (q * kv).transpose(-1, -2).reshape(T, B, C, H, W)
        return x + apply_conv_bn(y, self.proj_conv, self.proj_bn)


class MembraneShortcutMLP(nn.Module):
    """The reference's MS_MLP_Conv (with its residual): ``h = BN(conv(LIF(x)))``,
    ``x + BN(conv(LIF(h)))``; when the hidden width equals C, ``h`` gets its own residual."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.res = dim == hidden
        self.fc1_lif = MultiStepLIF()
        self.fc1_conv = nn.Conv2d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc2_lif = MultiStepLIF()
        self.fc2_conv = nn.Conv2d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm2d(dim)

    def forward(self, x):
        identity = x
        h = apply_conv_bn(self.fc1_lif(x), self.fc1_conv, self.fc1_bn)
        if self.res:
            h = h + x
            identity = h
        return apply_conv_bn(self.fc2_lif(h), self.fc2_conv, self.fc2_bn) + identity


class SDTv1Block(nn.Module):
    """MS_Block_Conv: attention, then MLP, each with its own (membrane) residual."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.attn = SpikeDrivenSelfAttention(dim, num_heads)
        self.mlp = MembraneShortcutMLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        return self.mlp(self.attn(x))


@register('model')
class SDTv1(SpikingTransformerBackbone):
    """Spike-driven Transformer v1 backbone (time-first, multi-step LIF; see the module
    docstring).

    Args:
        arch (str): a key of ``ARCH_SETTINGS`` ('8-384' = the reference ERF script's
            ImageNet model); ``depth`` / ``embed_dims`` / ``num_heads`` override it.
        embed_dims (int | None): width E (a multiple of 8 and of ``num_heads``).
        depth (int | None): number of blocks D.
        num_heads (int | None): attention heads.
        mlp_ratio (float): MLP expansion.
        in_channels (int): input channels.
        T (int): time steps (the image is repeated T times; a [T, B, C, H, W] input gives one
            frame per step).
        pooling_stat (str): 4 characters; '0' at position i skips the tokenizer's max-pool i.
        out_indices (tuple[int]): stage taps to return, 0..4 (strides 2, 4, 8, 16, 16 with
            all max-pools on).
        num_classes (int): > 0 builds the reference's classifier (mean over tokens,
            ``head_lif``, Linear, mean over time) for :meth:`classify`; 0 (default) for
            det/seg.
        keep_time (bool): return [T, B, C, h, w] taps instead of the mean over time.
        frozen_stages (int): freeze the layers of taps 0..frozen_stages (-1: none).
        norm_eval (bool): keep BatchNorm in eval mode while training.
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)`` loads a
            reference (ImageNet) or mmsnn checkpoint through the one converter
            (:func:`~mmsnn.models.reference_conversion.load_pretrained`, which applies
            :func:`checkpoint_filter_fn`).
    """

    checkpoint_filter_fn = staticmethod(checkpoint_filter_fn)

    def __init__(self, arch='8-384', embed_dims=None, depth=None, num_heads=None,
                 mlp_ratio=4.0, in_channels=3, T=4, pooling_stat='1111',
                 out_indices=(1, 2, 3, 4), num_classes=0, keep_time=False, frozen_stages=-1,
                 norm_eval=False, init_cfg=None):
        super().__init__(T=T, out_indices=out_indices, num_classes=num_classes,
                         keep_time=keep_time, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, init_cfg=init_cfg)
        depth, embed_dims, num_heads = self._resolve_arch(
            ARCH_SETTINGS, arch, depth, embed_dims, num_heads)
        if len(pooling_stat) != 4 or set(pooling_stat) - {'0', '1'}:
            raise ValueError(f"pooling_stat must be 4 characters of '0'/'1', got "
                             f'{pooling_stat!r}')
        self.tap_channels = (embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims,
                             embed_dims)
        strides, s = [], 1
        for c in pooling_stat:
            s *= 2 if c == '1' else 1
            strides.append(s)
        self.tap_strides = tuple(strides + [s])
        self.patch_embed = MembraneShortcutTokenizer(in_channels, embed_dims, pooling_stat)
        self.block = nn.ModuleList([SDTv1Block(embed_dims, num_heads, mlp_ratio)
                                    for _ in range(depth)])
        if self.num_classes:
            self.head_lif = MultiStepLIF()
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
    def from_reference_config(cls, config, **overrides):
        """Build from the reference constructor's kwargs (``SpikeDrivenTransformer(**config)``).
        ``overrides`` are our own arguments."""
        for key, ok in (('spike_mode', 'lif'), ('dvs_mode', False), ('TET', False)):
            if config.get(key, ok) != ok:
                raise ValueError(f'SDTv1 supports {key}={ok!r} only (static images, LIF '
                                 f'neurons), the config asks for {config[key]!r}: set '
                                 f'{key}={ok!r}')
        kw = dict(embed_dims=config['embed_dims'], depth=config['depths'],
                  num_heads=config['num_heads'], mlp_ratio=config['mlp_ratios'],
                  in_channels=config['in_channels'], T=config.get('T', 4),
                  pooling_stat=config.get('pooling_stat', '1111'),
                  num_classes=config.get('num_classes', 1000), out_indices=(0, 1, 2, 3, 4))
        kw.update(overrides)
        return cls(arch=None, **kw)

    def _forward_taps(self, x, last):
        taps = []
        x = self.patch_embed(x, taps)
        taps[3] = x  # tap 3 is the tokenizer's output (x_feat + RPE)
        if last == 4:
            for blk in self.block:
                x = blk(x)
            taps.append(x)
        return taps

    def _forward_head(self, x):
        x = self.head_lif(x.flatten(3).mean(3))  # [T, B, C] spikes
        return self.head(x).mean(0)
