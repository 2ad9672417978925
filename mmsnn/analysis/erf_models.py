"""The backbones an ERF comparison probes: which models (config files, bare backbone dicts,
``--models`` presets), how they are built and loaded, and how their stage taps are matched
by stride.

    >>> from mmsnn.analysis.erf_models import model_specs, build_backbone, tap_strides
    >>> specs = model_specs(models=['qkformer', 'swin-t'])       # [(label, kind, payload)]
    >>> backbone, note = build_backbone(specs[0][2][0], toolbox_init=True)
    >>> match_strides('qkformer', tap_strides(backbone, (224, 224)), [8, 16])  # {8: 2, 16: 4}

Used by ``tools/analysis/st_erf.py``.
"""
import ast
import inspect
import os.path as osp

import torch
from torch.optim.swa_utils import update_bn

from ..utils.errors import MMSNNUserError
from .model_init import quiet_init

#: ``mmseg.`` type prefix picks that toolbox's registry). mmsnn backbones expose all five
#: taps so that any stride can be matched; the sizes are the published ones (Meta-SDT: the
#: smallest, 't').
MODEL_PRESETS = {
    'spikformer': dict(type='Spikformer', arch='8-512', out_indices=(0, 1, 2, 3, 4)),
    'sdt_v1': dict(type='SDTv1', arch='8-384', out_indices=(0, 1, 2, 3, 4)),
    'qkformer': dict(type='QKFormer', arch='10-384', out_indices=(0, 1, 2, 3, 4)),
    'metasdt-conv': dict(type='MetaSDT', arch='t', mixer='conv', out_indices=(0, 1, 2, 3, 4)),
    'metasdt-mlpixer': dict(type='MetaSDT', arch='t', mixer='mlpixer',
                            out_indices=(0, 1, 2, 3, 4)),
    'metasdt-srb': dict(type='MetaSDT', arch='t', mixer='srb', out_indices=(0, 1, 2, 3, 4)),
    'swin-t': dict(type='mmdet.SwinTransformer'),
    'pvtv2-b0': dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=32,
                     num_layers=[2, 2, 2, 2]),
}


def parse_backbone_spec(text):
    """``"dict(type='MetaSDT', arch='s')"`` or ``"{'type': 'MetaSDT'}"`` -> dict, without
    evaluating code (only literals are accepted)."""
    try:
        node = ast.parse(text.strip(), mode='eval').body
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict' \
                and not node.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        value = ast.literal_eval(node)
        if isinstance(value, dict):
            return value
    except (SyntaxError, ValueError) as e:
        raise MMSNNUserError(f'--backbone {text!r} is not a dict of literals ({e}); write e.g. '
                       "\"dict(type='MetaSDT', arch='s', mixer='srb')\"") from None
    raise MMSNNUserError(f'--backbone {text!r} is not a dict; write e.g. '
                   "\"dict(type='MetaSDT', arch='s', mixer='srb')\"")



def _checkpoint_entry(ckpt, what, none_hint):
    """A ``--checkpoint`` / ``--model-checkpoints`` entry: None for "none" (random init),
    else a path that must exist."""
    if ckpt is None or ckpt.lower() in ('none', '-', ''):
        return None
    if not osp.isfile(ckpt):
        raise MMSNNUserError(f'checkpoint {ckpt!r} (for {what}) does not exist; check the path, '
                             f'or pass "none" {none_hint}')
    return ckpt


def _config_and_bare_specs(configs, checkpoints, backbones, mixers, arch, embed_dims, T,
                           neuron):
    ckpts = checkpoints or []
    if ckpts and not configs:
        raise MMSNNUserError('--checkpoint needs config files: pass CONFIG [CONFIG ...] before '
                             'it (bare backbones take no checkpoint)')
    if ckpts and len(ckpts) != len(configs):
        raise MMSNNUserError(f'got {len(configs)} config(s) but {len(ckpts)} checkpoint(s); '
                             'give one checkpoint per config, in the same order ("none" for a '
                             'random init)')
    specs = []
    for i, cfg in enumerate(configs):
        if not osp.isfile(cfg):
            raise MMSNNUserError(f'config file {cfg!r} does not exist; pass the path of an '
                                 'mmdet / mmseg config (e.g. configs/det/...py), or use '
                                 '--arch/--mixers or --backbone for a bare backbone')
        ckpt = _checkpoint_entry(ckpts[i] if ckpts else None, cfg,
                                 'to use a randomly initialised model')
        specs.append((osp.splitext(osp.basename(cfg))[0], 'config', (cfg, ckpt)))
    bare = dict()
    if T is not None:
        bare['T'] = T
    if neuron is not None:
        bare['neuron_cfg'] = dict(type=neuron)
    for text in backbones:
        spec = parse_backbone_spec(text)
        spec.setdefault('type', 'MetaSDT')
        for k, v in bare.items():
            spec.setdefault(k, v)
        label = spec.get('mixer', spec['type']) if len(backbones) > 1 else spec['type']
        specs.append((label, 'backbone', (spec, None)))
    if mixers or arch or embed_dims:
        for mixer in mixers or ['conv']:
            spec = dict(type='MetaSDT', mixer=mixer, **bare)
            if embed_dims:
                spec['embed_dims'] = tuple(embed_dims)
            else:
                spec['arch'] = arch or 's'
            specs.append((mixer, 'backbone', (spec, None)))
    if not specs:
        raise MMSNNUserError('nothing to analyse: pass config file(s), --backbone SPEC, or '
                             '--arch/--mixers (e.g. --arch s --mixers conv mlpixer srb)')
    return specs


def _comparison_specs(models, model_checkpoints, T, delays, encoding):
    ckpts = model_checkpoints or []
    if ckpts and len(ckpts) != len(models):
        raise MMSNNUserError(f'got {len(models)} model(s) but {len(ckpts)} checkpoint(s); give '
                             'one per --models entry, in the same order ("none" for random '
                             'init)')
    if delays and encoding != 'per-step':
        raise MMSNNUserError('--delays needs one input frame per time step: add --encoding '
                             'per-step')
    specs = []
    for i, text in enumerate(models):
        if text in MODEL_PRESETS:
            label, spec = text, dict(MODEL_PRESETS[text])
        elif text.lstrip().startswith(('dict(', '{')):
            spec = parse_backbone_spec(text)
            if 'type' not in spec:
                raise MMSNNUserError(f'--models {text!r} has no type')
            label = str(spec['type']).split('.')[-1]
        else:
            raise MMSNNUserError(f'--models: unknown model {text!r}; use a preset '
                                 f'({", ".join(MODEL_PRESETS)}) or a backbone dict such as '
                                 "\"dict(type='mmdet.SwinTransformer')\"")
        if T is not None and spec.get('type') in ('Spikformer', 'SDTv1', 'QKFormer'):
            spec.setdefault('T', T)
        ckpt = _checkpoint_entry(ckpts[i] if ckpts else None, text,
                                 'for a randomly initialised model')
        specs.append((label, 'backbone', (spec, ckpt)))
    return specs


def model_specs(configs=(), checkpoints=None, backbones=(), mixers=None, arch=None,
                embed_dims=None, T=None, neuron=None, models=None, model_checkpoints=None,
                labels=None, taps=None, delays=False, encoding='direct'):
    """``[(label, kind, payload)]`` of the models to probe, checked before any work: kind
    ``'config'`` with payload ``(config path, checkpoint or None)``, or ``'backbone'`` with
    ``(backbone dict, checkpoint or None)``. Labels are made unique (they name folders).

    Either ``models`` (``--models``: presets or backbone dicts, each with an optional entry of
    ``model_checkpoints``, taps matched by stride) or config files / bare backbone dicts /
    MetaSDT ``mixers`` (with ``T`` and ``neuron`` for the bare ones).
    """
    if models:
        if configs or backbones or mixers or arch or embed_dims:
            raise MMSNNUserError('--models compares its own list: do not combine it with '
                                 'config files, --backbone, --arch or --mixers (put those '
                                 'models in --models)')
        if taps:
            raise MMSNNUserError('--models matches taps by stride: use --strides instead of '
                                 '--taps')
        specs = _comparison_specs(models, model_checkpoints, T, delays, encoding)
    else:
        specs = _config_and_bare_specs(configs, checkpoints, backbones, mixers, arch,
                                       embed_dims, T, neuron)
    if labels:
        if len(labels) != len(specs):
            raise MMSNNUserError(f'--labels has {len(labels)} names for {len(specs)} models')
        specs = [(lab, k, p) for lab, (_, k, p) in zip(labels, specs)]
    seen, unique = {}, []
    for label, k, p in specs:  # make labels unique (used as folder names)
        n = seen.get(label, 0)
        seen[label] = n + 1
        unique.append((f'{label}_{n}' if n else label, k, p))
    return unique


def build_from_config(path, ckpt, cfg_options, taps):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsnn  # noqa: F401  (registers mmsnn modules)
    from mmsnn.models import CheckpointMismatchError, load_pretrained
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # noqa: BLE001 - config syntax / import errors
        raise MMSNNUserError(f'could not read config {path!r}: {type(e).__name__}: '
                       f'{str(e).splitlines()[0] if str(e) else ""}') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    if 'model' not in cfg:
        raise MMSNNUserError(f'config {path!r} has no `model`; pass a det/seg model config')
    try:
        model = MODELS.build(cfg.model)
    except KeyError as e:
        raise MMSNNUserError(f'could not build the model of {path!r}: {e}. Is the type registered '
                       "(custom_imports=dict(imports=['mmsnn']))?") from None
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        raise MMSNNUserError(f'the model of {path!r} ({type(model).__name__}) has no backbone')
    note = 'random init'
    if ckpt is not None:
        try:
            missing, unexpected = load_pretrained(backbone, ckpt)
        except (CheckpointMismatchError, RuntimeError, FileNotFoundError) as e:
            raise MMSNNUserError(f'checkpoint {ckpt!r} does not fit the backbone of {path!r}: '
                           f'{str(e).splitlines()[0]}') from None
        note = f'checkpoint {osp.basename(ckpt)}'
        if missing:
            note += f' ({len(missing)} backbone keys missing!)'
    _check_taps(backbone, taps, path)
    return backbone, note


def build_backbone(spec, checkpoint=None, taps=None, toolbox_init=False):
    """A backbone from a dict in the mmdet scope (an ``mmdet.`` / ``mmseg.`` type prefix
    reaches that toolbox's registry); returns ``(backbone, note)``.

    ``taps`` become a MetaSDT's ``out_indices`` unless the dict sets them; ``toolbox_init``
    runs the backbone's own ``init_weights`` (as the toolbox does, quietly); ``checkpoint`` is
    loaded through mmsnn's converter.
    """
    from mmengine.registry import init_default_scope

    import mmsnn  # noqa: F401  (registers mmsnn modules)
    from mmdet.registry import MODELS
    from mmsnn.models import CheckpointMismatchError, load_pretrained
    init_default_scope('mmdet')
    spec = dict(spec)
    if taps is not None and spec.get('type') == 'MetaSDT':
        spec.setdefault('out_indices', tuple(taps))
    try:
        backbone = MODELS.build(spec)
    except (KeyError, ValueError, TypeError, AssertionError) as e:
        raise MMSNNUserError(f'could not build backbone {spec}: {e}') from None
    if toolbox_init and hasattr(backbone, 'init_weights'):
        quiet_init(backbone)
    if checkpoint is None:
        return backbone, 'random init'
    try:
        missing, _ = load_pretrained(backbone, checkpoint)
    except (CheckpointMismatchError, RuntimeError) as e:
        raise MMSNNUserError(f'checkpoint {checkpoint!r} does not fit {spec["type"]}: '
                             f'{str(e).splitlines()[0]}') from None
    note = f'checkpoint {osp.basename(checkpoint)}'
    return backbone, note + (f' ({len(missing)} keys missing!)' if missing else '')


def _check_taps(backbone, taps, where):
    from mmsnn.analysis import backbone_tap_targets
    try:
        backbone_tap_targets(backbone, taps)
    except ValueError as e:
        raise MMSNNUserError(f'{where}: {e}') from None


def relu_taps(backbone):
    """The backbone with ``relu`` on every returned tap: the ERF engine's objective (the
    centre summed over channels) becomes RepLKNet's ``relu(y_centre).sum()``. Spike taps
    (non-negative) are unchanged, gradients included; a LayerNorm-ed ANN tap at random
    init, whose channel sum is identically 0, gets a meaningful ERF."""
    class ReluTaps(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = backbone
            for attr in ('T', 'stateful', 'out_indices'):  # read by the ERF engine
                if hasattr(backbone, attr):
                    setattr(self, attr, getattr(backbone, attr))
            self._keep_time = 'keep_time' in inspect.signature(backbone.forward).parameters

        def forward(self, x, keep_time=None):
            outs = (self.backbone(x, keep_time=keep_time) if self._keep_time and keep_time
                    else self.backbone(x))
            # clamp, not F.relu: its gradient is 1 at 0, so a silent spike (0) keeps the
            # surrogate gradient and spike taps are left exactly as they are
            return tuple(o.clamp(min=0) for o in ((outs,) if torch.is_tensor(outs) else outs))

    return ReluTaps()


def calibrate_batchnorm(backbone, inputs, batch_size):
    """Set each BatchNorm's running mean/var to the statistics of the inputs it receives
    while ``inputs`` pass through the backbone (train-mode forward passes, cumulative
    average: ``torch.optim.swa_utils.update_bn``). Every module's train/eval flag is restored
    afterwards (``update_bn`` would set them all to the backbone's). Returns the number of
    BatchNorm layers (0: nothing to calibrate)."""
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    flags = [(m, m.training) for m in backbone.modules()]
    try:
        with torch.no_grad():
            update_bn(inputs.split(batch_size), backbone)
    finally:
        for m, flag in flags:
            m.training = flag
    return len(bns)


def tap_strides(backbone, size):
    """``[(tap, stride)]`` of the backbone's outputs, measured by one forward pass (tap = the
    backbone's ``out_indices`` entry, or the output position)."""
    p = next(backbone.parameters())
    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.zeros(1, 3, *size, dtype=p.dtype, device=p.device))
    if torch.is_tensor(outs):
        outs = (outs,)
    indices = list(getattr(backbone, 'out_indices', range(len(outs))))
    out = []
    for k, y in zip(indices, outs):
        h = y.shape[-2]
        out.append((int(k), int(round(size[0] / h))))
    return out


def match_strides(label, strides_of_taps, wanted):
    """``{stride: tap}``: for each wanted stride the deepest tap that has it."""
    taps = {}
    for s in wanted:
        found = [k for k, st in strides_of_taps if st == s]
        if not found:
            have = sorted({st for _, st in strides_of_taps})
            raise MMSNNUserError(f'{label} has no stage tap with stride {s} (its strides: {have}); '
                           'pick --strides among the strides every model has')
        taps[s] = found[-1]
    return taps

