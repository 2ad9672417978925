"""Meta-SDT: the Spike-Driven Transformer v3 backbone, with the conv / MLPixer / SRB mixers.

Five stage taps (index them with ``out_indices``)::

    tap  reference modules                                  channels  stride
    0    downsample1_1 (7x7 s2 stem), ConvBlock1_1          C0/2      2
    1    downsample1_2, ConvBlock1_2                        C0        4
    2    downsample2, ConvBlock2_1, ConvBlock2_2            C1        8
    3    downsample3, block3[0..5] (transformer)            C2        16
    4    downsample4 (stride 1!), block4[0..1]              C3        16

Detection uses taps (1, 2, 3, 4), segmentation (0, 1, 2, 4).
"""
import numpy as np
import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.logging import MMLogger

from ...registry import register
from ..layers import (ResidualBranches, SpikeConvBlock, SpikeDownsample,
                      SpikeTransformerBlock, TimeFoldedDropPath)
from ..mixers import MLPixerMixer, SplashReconstructMixer
from ..neurons import build_neuron, compact_spike_storage, is_stateful
from .base import SpikingBackbone

#: embed dims (C0, C1, C2, C3) of the published sizes; parameter counts in the reference doc.
ARCH_SETTINGS = {
    't': (24, 48, 96, 128),
    's': (32, 64, 128, 192),
    'm': (48, 96, 192, 240),
    'l': (64, 128, 256, 360),
    'xl': (80, 160, 320, 440),
    'xxl': (112, 224, 448, 560),
}

#: the early-stage block for each ``mixer`` choice
EARLY_BLOCKS = {
    'conv': SpikeConvBlock,
    'mlpixer': MLPixerMixer,
    'srb': SplashReconstructMixer,
}

# (stage name, modules that belong to it) in forward order; the names are the reference's.
_STAGES = (
    ('downsample1_1', 'ConvBlock1_1'),
    ('downsample1_2', 'ConvBlock1_2'),
    ('downsample2', 'ConvBlock2_1', 'ConvBlock2_2'),
    ('downsample3', 'block3'),
    ('downsample4', 'block4'),
)


#: the classifier of the released ImageNet checkpoints (not part of the backbone)
_CLASSIFIER_PREFIXES = ('head.', 'head_spike.', 'fc.')


def checkpoint_filter_fn(state_dict, model=None):
    """Released Meta-SDT weights -> ``MetaSDT`` keys: the module names are the reference's,
    so only the ImageNet classifier is dropped, and, given the ``model``, the stages it does
    not build (used by the one converter,
    :func:`~mmsnn.models.reference_conversion.convert_reference_checkpoint`)."""
    drop = _CLASSIFIER_PREFIXES
    if model is not None:
        drop += tuple(f'{name}.' for names in _STAGES[model.num_stages:] for name in names)
    return {k: v for k, v in state_dict.items() if not k.startswith(drop)}


@register('model')
class MetaSDT(SpikingBackbone):
    """Meta-SDT spiking backbone.

    Args:
        arch (str): one of ``ARCH_SETTINGS`` ('t', 's', 'm', 'l', 'xl', 'xxl'); ignored when
            ``embed_dims`` is given.
        embed_dims (tuple[int] | None): (C0, C1, C2, C3).
        mixer (str): early-stage mixer, 'conv' (baseline), 'mlpixer' or 'srb'.
        mlp_ratio (int): expansion of the transformer MLPs and of the early blocks.
        mixer_ratio (int | None): expansion of the early blocks only (e.g. 6 for "MLPixer r6");
            defaults to ``mlp_ratio``.
        token_layout (str): 'raster' (default; the reference's raw reshape, weight-compatible)
            or 'pixel' (per-pixel channel MLP; not weight-compatible). See ``mixers.py``.
        out_indices (tuple[int]): stage taps to return, 0..4. Stages after the last requested
            tap are not built (their checkpoint keys are skipped when loading).
        drop_rate (float): dropout inside the MLPixer/SRB mixers (the reference uses 0.2 when
            training ImageNet models). Ignored by the conv mixer.
        drop_path_rate (float): stochastic depth, linearly increasing over the 12 blocks and
            applied to every residual branch, one draw per sample shared by its time steps
            (also for time-folded ``[T*B]`` batches). The reference declares drop-path but never
            applies it; here it really drops paths (0 reproduces the reference).
        T (int): time steps. With the stateless integer quantiser (default) T is virtual and
            the backbone computes one step. With a stateful neuron (``ILIF``, ``LIF``) it runs
            T real steps; a 4-D input is repeated over T (direct encoding), a 5-D input
            ``[T, B, 3, H, W]`` gives one frame per step.
        neuron_cfg (dict | None): neuron, e.g. ``dict(type='MultiSpikeQuantizer', max_value=4,
            norm=4)`` (default), ``dict(type='IntegerLIF')`` or
            ``dict(type='BinaryLIF', tau=2.)``.
        keep_time (bool): return ``[T, B, C, H, W]`` taps instead of the mean over time.
        last_stage_stride (int): 1 (reference; tap 4 stays at stride 16) or 2 (stride 32).
        attn_order (str): 'linear' computes q(k^T v) in O(N d^2) memory (default);
            'quadratic' the reference's (q k^T) v, for benchmarks.
        frozen_stages (int): freeze stages 0..frozen_stages (-1: none).
        norm_eval (bool): keep BatchNorm in eval mode while training.
        compact_spikes (bool): during training, keep the spikes that autograd saves for the
            backward pass as uint8 counts (exact; a quarter of float32). On by default.
        with_cp (bool): activation checkpointing (as ``with_cp`` of mmdet's/mmpretrain's
            backbones), of every residual branch of every block on its own: the backward
            recomputes each branch's forward, trading training time for activation memory.
            Same numbers either way.
        norm_cfg (dict | None): the norm after every conv / linear layer, as mmcv builds it:
            ``dict(type='BN')`` (default, the reference's), ``dict(type='SyncBN')``,
            ``dict(type='GN', num_groups=8)``, ... The token MLPs' 1-D BNs get the 1-D
            variant of BN. Checkpoint keys stay the same for every BN type.
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)`` loads a reference
            or mmsnn checkpoint through :func:`convert_reference_checkpoint` and logs every
            missing and unexpected key by name.
    """

    checkpoint_filter_fn = staticmethod(checkpoint_filter_fn)

    def __init__(self, arch='s', embed_dims=None, mixer='conv', mlp_ratio=4, mixer_ratio=None,
                 token_layout='raster', in_channels=3, num_heads=8, out_indices=(1, 2, 3, 4),
                 drop_rate=0.0, drop_path_rate=0.0, T=1, neuron_cfg=None, keep_time=False,
                 last_stage_stride=1, attn_order='linear', frozen_stages=-1, norm_eval=False,
                 compact_spikes=True, with_cp=False, norm_cfg=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims is None:
            if arch not in ARCH_SETTINGS:
                raise KeyError(f'unknown MetaSDT arch {arch!r}; choose one of '
                               f'{sorted(ARCH_SETTINGS)} or pass embed_dims=(C0, C1, C2, C3)')
            embed_dims = ARCH_SETTINGS[arch]
        if len(embed_dims) != 4:
            raise ValueError(f'embed_dims must have 4 entries (C0..C3), got {embed_dims}')
        if mixer not in EARLY_BLOCKS:
            raise KeyError(f'unknown mixer {mixer!r}; choose one of {sorted(EARLY_BLOCKS)}')
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in range(5) for i in out_indices):
            raise ValueError(f'out_indices must index the stage taps 0..4, got {out_indices}')
        if last_stage_stride not in (1, 2):
            raise ValueError(f'last_stage_stride must be 1 or 2, got {last_stage_stride}')
        if int(T) < 1:
            raise ValueError(f'T must be >= 1, got {T}')
        C0, C1, C2, C3 = embed_dims
        self.embed_dims = tuple(embed_dims)
        self.mixer = mixer
        self.out_indices = out_indices
        self.T = int(T)
        self.neuron_cfg = neuron_cfg
        self.stateful = is_stateful(neuron_cfg)
        self.keep_time = keep_time
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.compact_spikes = compact_spikes
        self.tap_channels = (C0 // 2, C0, C1, C2, C3)
        self.tap_strides = (2, 4, 8, 16, 16 * last_stage_stride)

        def neuron():
            return build_neuron(neuron_cfg, self.T)

        dpr = iter(np.linspace(0, drop_path_rate, 12).tolist())
        early = EARLY_BLOCKS[mixer]
        r_early = mlp_ratio if mixer_ratio is None else mixer_ratio

        def early_block(dim):
            return nn.ModuleList([early(dim, mlp_ratio=r_early, neuron=neuron,
                                        drop_rate=drop_rate, drop_path=next(dpr),
                                        token_layout=token_layout)])

        def transformer_blocks(dim, depth):
            return nn.ModuleList([
                SpikeTransformerBlock(dim, mlp_ratio, num_heads, neuron=neuron,
                                      drop_path=next(dpr), attn_order=attn_order)
                for _ in range(depth)])

        # Only the stages up to the last requested tap are built: later ones could not change
        # the output, and unused parameters break DDP (find_unused_parameters=False).
        self.num_stages = max(out_indices) + 1
        stage_builders = (
            lambda: dict(downsample1_1=SpikeDownsample(in_channels, C0 // 2, 7, 2, 3, first=True),
                         ConvBlock1_1=early_block(C0 // 2)),
            lambda: dict(downsample1_2=SpikeDownsample(C0 // 2, C0, 3, 2, 1, neuron=neuron),
                         ConvBlock1_2=early_block(C0)),
            lambda: dict(downsample2=SpikeDownsample(C0, C1, 3, 2, 1, neuron=neuron),
                         ConvBlock2_1=early_block(C1), ConvBlock2_2=early_block(C1)),
            lambda: dict(downsample3=SpikeDownsample(C1, C2, 3, 2, 1, neuron=neuron),
                         block3=transformer_blocks(C2, 6)),
            lambda: dict(downsample4=SpikeDownsample(C2, C3, 3, last_stage_stride, 1,
                                                     neuron=neuron),
                         block4=transformer_blocks(C3, 2)),
        )
        for build in stage_builders[:self.num_stages]:
            for name, module in build().items():
                self.add_module(name, module)
        self._drop_paths = [m for m in self.modules() if isinstance(m, TimeFoldedDropPath)]
        self.with_cp = with_cp
        self._register_load_state_dict_pre_hook(self._skip_unbuilt_stages)
        self._set_norms(norm_cfg)
        self._freeze_stages()

    def _set_norms(self, norm_cfg):
        """Replace the blocks' BatchNorms by ``norm_cfg``'s norm (as mmengine's
        ``convert_sync_batchnorm`` does for SyncBN), keeping their names."""
        if norm_cfg is None or dict(norm_cfg) in (dict(type='BN'),
                                                  dict(type='BN', requires_grad=True)):
            return  # the blocks build plain BN already
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.modules.batchnorm._BatchNorm):
                    cfg = dict(norm_cfg)
                    if isinstance(child, nn.BatchNorm1d) and cfg['type'] in ('BN', 'BN2d'):
                        cfg['type'] = 'BN1d'
                    setattr(parent, name, build_norm_layer(cfg, child.num_features)[1])

    @property
    def with_cp(self):
        return self._with_cp

    @with_cp.setter
    def with_cp(self, value):
        # the blocks checkpoint their residual branches themselves (ResidualBranches)
        self._with_cp = bool(value)
        for m in self.modules():
            if isinstance(m, ResidualBranches):
                m.with_cp = self._with_cp

    @property
    def out_channels(self):
        """Channels of the returned taps, in ``out_indices`` order (for neck configs)."""
        return [self.tap_channels[i] for i in self.out_indices]

    @property
    def out_strides(self):
        """Strides of the returned taps, in ``out_indices`` order (for anchors and RoIs)."""
        return [self.tap_strides[i] for i in self.out_indices]

    def _skip_unbuilt_stages(self, state_dict, prefix, *args):
        """Load-time hook: a checkpoint of the whole backbone fits one whose ``out_indices``
        stop early; the keys of the stages it does not build are dropped, not 'unexpected'."""
        unbuilt = tuple(f'{prefix}{name}.' for names in _STAGES[self.num_stages:]
                        for name in names)
        skipped = [k for k in state_dict if unbuilt and k.startswith(unbuilt)]
        for k in skipped:
            del state_dict[k]
        if skipped:
            MMLogger.get_current_instance().info(
                f'MetaSDT: skipped {len(skipped)} checkpoint keys of the stages after tap '
                f'{self.num_stages - 1} (not built: out_indices={self.out_indices})')

    def forward(self, x, keep_time=None):
        # with_cp too: what the checkpointed branches keep is their input, but the layers
        # between them (the downsamples) still save spikes; inside a checkpointed branch the
        # checkpoint's own saved-tensor hooks take precedence (recomputed, not stored).
        # Not under torch.compile: dynamo cannot enter saved-tensor hooks (it runs this frame
        # eagerly, a graph break), and what a compiled graph saves is chosen by AOTAutograd
        if self.compact_spikes and torch.is_grad_enabled() \
                and not torch.compiler.is_compiling():
            with compact_spike_storage():
                return self._forward(x, keep_time)
        return self._forward(x, keep_time)

    def _forward(self, x, keep_time=None):
        """``x``: [B, 3, H, W], or [T, B, 3, H, W] with a frame per time step.

        Returns a tuple of taps [B, C, h, w] (mean over time), or [T, B, C, h, w] when
        ``keep_time`` (argument or constructor) is true.
        """
        keep_time = self.keep_time if keep_time is None else keep_time
        if x.dim() == 5:
            steps, B = x.shape[:2]
            if self.stateful and steps != self.T:
                raise ValueError(f'MetaSDT was built for T={self.T} time steps but got an input '
                                 f'with {steps}; pass [T, B, C, H, W] with T={self.T}')
            x = x.flatten(0, 1)
        elif x.dim() == 4:
            B = x.shape[0]
            steps = self.T if self.stateful else 1  # the integer quantiser needs no real steps
            if steps > 1:
                x = x.unsqueeze(0).expand(steps, *x.shape).flatten(0, 1)
        else:
            raise ValueError(f'MetaSDT expects [B, C, H, W] or [T, B, C, H, W], got shape '
                             f'{tuple(x.shape)}')

        for m in self._drop_paths:  # one drop decision per sample for all its steps
            m.steps = steps
        outs = {}
        for tap, names in enumerate(_STAGES[:self.num_stages]):
            for name in names:
                module = getattr(self, name)
                if isinstance(module, nn.ModuleList):
                    for block in module:
                        x = block(x)
                else:
                    x = module(x)
            if tap in self.out_indices:
                outs[tap] = x
        return tuple(self._time_out(outs[i], steps, B, keep_time) for i in self.out_indices)

    def _time_out(self, x, steps, B, keep_time):
        x = x.reshape(steps, B, *x.shape[1:])
        if keep_time:
            return x.expand(self.T, *x.shape[1:]) if steps == 1 else x
        return x.mean(0)

    def stage_module_names(self):
        """Per stage tap, the names of the modules that make it in forward order (module
        lists block by block); the last one's output is the tap, time still folded into the
        batch. The ERF tools read taps outside ``out_indices`` there."""
        stages = []
        for names in _STAGES:
            stage = []
            for name in names:
                module = getattr(self, name, None)
                if isinstance(module, nn.ModuleList):
                    stage += [f'{name}.{i}' for i in range(len(module))]
                elif module is not None:
                    stage.append(name)
            stages.append(tuple(stage))
        return tuple(stages)

    def _stage_modules(self, i):
        names = _STAGES[i] if i < self.num_stages else ()
        return [getattr(self, name) for name in names]
