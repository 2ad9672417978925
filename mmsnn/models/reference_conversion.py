"""The one place where released (reference) checkpoints become mmsnn state dicts.

:func:`convert_reference_checkpoint` takes what researchers have and returns the state dict
of the mmsnn model:

* ``task='backbone'``: an ImageNet checkpoint (``{'model': sd}``, ``{'state_dict': sd}`` or a
  bare ``sd``), or the ``backbone.*`` part of a detector / segmentor, for the backbone alone;
* ``task='det'``: a whole reference spiking Mask R-CNN (``{'state_dict': sd}``) for the
  configs in ``configs/det/reference``;
* ``task='seg'``: a whole reference spiking Semantic FPN for ``configs/seg/reference``.

``module.`` prefixes (DataParallel / DDP) are stripped, non-tensor entries dropped, and files
are read with mmsnn's restricted unpickler (:func:`mmsnn.utils.checkpoint_io.load_checkpoint_file`):
the ``argparse.Namespace`` / numpy scalars that training scripts pickle next to the weights
are allowed, any other object is refused.

Key mappings (the reference and mmsnn share the backbone's module names, so backbone keys go
through unchanged apart from the family's filter):

* det neck / RPN / RoI heads: the reference wraps every layer as ``X.<i>.1.module`` (a
  quantiser at ``.0``), mmsnn names the layer itself: ``X.i.1.module[.conv].P`` ->
  ``X.i[.conv].P``; the RPN conv ``rpn_conv.1.module.P`` -> ``rpn_conv.0.conv.P``.
* seg neck: ``X.i.0.*`` (conv) -> ``X.i.conv.*``, ``X.i.1.*`` (BN) -> ``X.i.bn.*``.
* seg decode head: ``scale_heads.i.j.{1,2}.*`` (``FPNHead``'s Sequential of unit,
  upsample, unit, ...; each unit quantiser, conv, BN) -> ``scale_heads.i.(j//2).{conv,bn}.*``.

Backbone families. Each backbone family (Meta-SDT, Spikformer, SDT-v1, QKFormer ...) keeps
its key filter beside its model file, timm style, and hangs it on the class; the one entry
point finds it there::

    def checkpoint_filter_fn(state_dict, model=None):
        # released keys (containers, 'module.' and 'backbone.' already removed) -> ours
        return {k: v for k, v in state_dict.items() if not k.startswith('head.')}

    @register('model')
    class MyBackbone(BaseModule):
        checkpoint_filter_fn = staticmethod(checkpoint_filter_fn)

``convert_reference_checkpoint(src, task, backbone='MyBackbone')`` (a registered type name,
the class or a built model, which the filter then receives) applies it to the backbone keys
of every task, and :func:`load_pretrained` (``init_cfg=dict(type='Pretrained')`` of a
backbone) passes the model itself. A family without a filter gets its keys unchanged.
"""
import inspect
import os
import re

import torch
from mmengine.logging import MMLogger
from mmengine.model.weight_init import PretrainedInit, update_init_info

from ..utils.checkpoint_io import load_checkpoint_file, state_dict_diff

TASKS = ('backbone', 'det', 'seg')

#: the released reference's backbone type names -> the mmsnn backbone that computes the same
REFERENCE_BACKBONES = {
    'Spiking_vit_MetaFormer_Spike_SepConv': dict(type='MetaSDT', mixer='conv'),
    'Spiking_vit_MetaFormer_Spike_SepConv_ChannelMLP': dict(type='MetaSDT', mixer='mlpixer'),
    'Spiking_vit_MetaFormer_Spike_SepConv_splash': dict(type='MetaSDT', mixer='srb'),
}


def _backbone_filter(backbone):
    """``fn(state_dict) -> state_dict``: the ``checkpoint_filter_fn`` of ``backbone`` (a
    registered type name, a class or a model), or no change when it has none."""
    if isinstance(backbone, str):
        from ..registry import get_registry
        cls = get_registry('model', 'mmdet').get(backbone) or \
            get_registry('model', 'mmseg').get(backbone)
        if cls is None:
            raise KeyError(f'unknown backbone {backbone!r}: give a registered type name '
                           "(e.g. 'MetaSDT'), a backbone class or a model")
        backbone = cls
    fn = getattr(backbone, 'checkpoint_filter_fn', None)
    if fn is None:
        return dict
    model = None if inspect.isclass(backbone) else backbone
    return lambda sd: fn(sd, model)


def reference_backbone_cfg(ref_cfg):
    """The mmsnn backbone config for a reference backbone config (its constructor args).

    >>> reference_backbone_cfg(dict(type='Spiking_vit_MetaFormer_Spike_SepConv_splash',
    ...                             embed_dim=[32, 64, 128, 192], mlp_ratios=4))
    {'type': 'MetaSDT', 'mixer': 'srb', 'embed_dims': (32, 64, 128, 192), 'mlp_ratio': 4}
    """
    ref_type = ref_cfg['type']
    if ref_type not in REFERENCE_BACKBONES:
        raise KeyError(f'unknown reference backbone {ref_type!r}; known: '
                       f'{sorted(REFERENCE_BACKBONES)}')
    cfg = dict(REFERENCE_BACKBONES[ref_type])
    cfg['embed_dims'] = tuple(ref_cfg['embed_dim'])
    cfg['mlp_ratio'] = ref_cfg.get('mlp_ratios', 4)
    for name in ('in_channels', 'num_heads'):
        if name in ref_cfg:
            cfg[name] = ref_cfg[name]
    return cfg


def _state_dict_of(checkpoint):
    """The weights inside whatever container, ``module.`` prefixes stripped, tensors only."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    if isinstance(checkpoint.get('state_dict'), dict):
        sd = checkpoint['state_dict']
    elif isinstance(checkpoint.get('model'), dict):
        sd = checkpoint['model']
    else:
        sd = checkpoint
    return {(k[7:] if k.startswith('module.') else k): v for k, v in sd.items()
            if torch.is_tensor(v)}


def _strip(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


# (pattern, replacement) per task, applied to the neck / head keys in order; a key that
# matches none stays as it is (so converting an mmsnn checkpoint again changes nothing)
_DET_RULES = (
    (re.compile(r'^rpn_head\.rpn_conv\.1\.module\.'), 'rpn_head.rpn_conv.0.conv.'),
    (re.compile(r'^((?:neck|rpn_head|roi_head)\..*?)\.1\.module\.'), r'\1.'),
)
_SEG_RULES = (
    (re.compile(r'^neck\.(lateral_convs|fpn_convs)\.(\d+)\.0\.'), r'neck.\1.\2.conv.'),
    (re.compile(r'^neck\.(lateral_convs|fpn_convs)\.(\d+)\.1\.'), r'neck.\1.\2.bn.'),
    (re.compile(r'^decode_head\.scale_heads\.(\d+)\.(\d+)\.([12])\.'),
     lambda m: (f'decode_head.scale_heads.{m[1]}.{int(m[2]) // 2}.'
                f'{"conv" if m[3] == "1" else "bn"}.')),
)


def _map_keys(sd, rules):
    out = {}
    for k, v in sd.items():
        for pattern, repl in rules:
            new = pattern.sub(repl, k, count=1)
            if new != k:
                k = new
                break
        out[k] = v
    return out


def convert_reference_checkpoint(checkpoint, task='backbone', backbone='MetaSDT'):
    """Return the mmsnn state dict of a released checkpoint (see the module docstring).

    Args:
        checkpoint (str | PathLike | dict): a file, or an already loaded checkpoint.
        task (str): 'backbone' (the backbone's own keys), 'det' or 'seg' (every key of the
            detector / segmentor, ``backbone.``, ``neck.``, heads).
        backbone (str | type | nn.Module): the backbone whose family's key filter
            (``checkpoint_filter_fn``) applies to the backbone keys; default 'MetaSDT'.
    """
    if task not in TASKS:
        raise ValueError(f'task must be one of {TASKS}, got {task!r}')
    source = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else None
    if source is not None:
        checkpoint = load_checkpoint_file(source)
    sd = _state_dict_of(checkpoint)
    key_filter = _backbone_filter(backbone)
    has_backbone = any(k.startswith('backbone.') for k in sd)
    if task == 'backbone':
        return key_filter(_strip(sd, 'backbone.') if has_backbone else sd)
    if not has_backbone:
        raise ValueError(
            f'{source or "the checkpoint"} has no backbone.* keys, so it is not a whole '
            f'{"detector" if task == "det" else "segmentor"} (e.g. {sorted(sd)[:3]}); for an '
            "ImageNet backbone checkpoint use task='backbone'.")
    rest = {k: v for k, v in sd.items() if not k.startswith('backbone.')}
    out = {f'backbone.{k}': v for k, v in key_filter(_strip(sd, 'backbone.')).items()}
    out.update(_map_keys(rest, _DET_RULES if task == 'det' else _SEG_RULES))
    return out


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model."""


def load_pretrained(model, checkpoint, logger=None, strict=False):
    """Load a backbone ``checkpoint`` into ``model`` after conversion (``task='backbone'``,
    the key filter of the model's family), reporting keys by name.

    Shape mismatches and a checkpoint sharing no key with the model raise
    :class:`CheckpointMismatchError`. Missing and unexpected keys are logged (and raise when
    ``strict``). Returns ``(missing, unexpected)``.
    """
    source = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else 'checkpoint'
    sd = convert_reference_checkpoint(checkpoint, 'backbone', backbone=model)
    own = model.state_dict()
    missing, unexpected, wrong_shape = state_dict_diff(own, sd)
    shape_errors = [f'{k}: checkpoint {c} vs model {m}' for k, c, m in wrong_shape]
    if shape_errors:
        raise CheckpointMismatchError(
            f'{source} does not fit {type(model).__name__}: {len(shape_errors)} tensors have '
            'the wrong shape (wrong arch/embed_dims/mixer/mlp_ratio?):\n  ' +
            '\n  '.join(shape_errors[:20]))
    if own and not set(sd) & set(own):
        raise CheckpointMismatchError(
            f'{source} shares no parameter name with {type(model).__name__} (e.g. checkpoint '
            f'{sorted(sd)[:3]} vs model {sorted(own)[:3]}). Is it a checkpoint of this '
            'backbone family?')
    model.load_state_dict(sd, strict=False)
    msgs = []
    if missing:
        msgs.append(f'missing keys ({len(missing)}): {", ".join(missing)}')
    if unexpected:
        msgs.append(f'unexpected keys ({len(unexpected)}): {", ".join(unexpected)}')
    if msgs:
        text = f'loading {source} into {type(model).__name__}: ' + '; '.join(msgs)
        if strict:
            raise CheckpointMismatchError(text)
        (logger.warning if logger else print)(text)
    elif logger:
        logger.info(f'loaded {source} into {type(model).__name__}: all {len(sd)} keys matched')
    return missing, unexpected


class ConvertedPretrainedInit(PretrainedInit):
    """mmengine's ``PretrainedInit`` for mmsnn backbones (``init_cfg=dict(type='Pretrained',
    checkpoint=..., prefix=None)``), with the checkpoint going through the one converter:
    ImageNet / detector / segmentor containers, ``module.`` and ``backbone.`` prefixes, and the
    family's ``checkpoint_filter_fn`` (timm style). Unlike mmengine's, which loads with a silent
    ``strict=False``, every missing and unexpected key is logged by name, and a wrong shape
    raises. ``checkpoint=None`` keeps the random initialisation (the configs carry the slot).
    ``prefix`` takes the weights under it (e.g. ``'backbone.'``; the converter already picks
    a whole detector's backbone)."""

    def __call__(self, module):
        logger = MMLogger.get_current_instance()
        if not self.checkpoint:
            logger.info(f'{type(module).__name__}: init_cfg.checkpoint is None, keeping the '
                        'random initialisation')
            return
        checkpoint = self.checkpoint
        if self.prefix:
            sd = _state_dict_of(load_checkpoint_file(checkpoint, self.map_location))
            checkpoint = _strip(sd, self.prefix)
        load_pretrained(module, checkpoint, logger=logger)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())


def init_backbone_weights(backbone):
    """``init_weights`` of an mmsnn backbone: ``init_cfg`` of type 'Pretrained' through
    :class:`ConvertedPretrainedInit`; returns False for any other ``init_cfg`` (then the
    caller runs ``BaseModule.init_weights``)."""
    cfg = backbone.init_cfg
    if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
        return False
    ConvertedPretrainedInit(**{k: v for k, v in cfg.items() if k != 'type'})(backbone)
    backbone._is_init = True
    return True
