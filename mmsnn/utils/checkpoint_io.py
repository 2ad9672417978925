"""Reading checkpoints safely on every supported torch, and checking that one fits a model.

mmsnn's own reads (:func:`load_checkpoint_file`: resume checks, ``load_from`` / ``--checkpoint``
checks, released checkpoints) unpickle with :mod:`mmsnn.utils.safe_pickle`, a restricted
unpickler that works the same on torch 2.1 and on the newest torch: tensors, containers,
numpy scalars/arrays, ``argparse.Namespace`` and mmengine's own objects load; any other
pickled object is refused, naming the global.

mmengine 0.10.7 itself calls plain ``torch.load`` when it resumes, and torch 2.6 made
``weights_only=True`` its default, which refuses mmengine's own checkpoint objects
(``HistoryBuffer`` of the message hub, numpy scalars/arrays in the logs). Instead of turning
safe loading off, exactly those types are allowed: inside :func:`mmengine_checkpoint_globals`
(a context manager, used around ``runner.train()`` in ``tools/train.py``), or for the rest of
the process by :func:`allow_mmengine_checkpoints` (called by mmsnn's checkpoint hook when a
run starts, so mmdet's / mmseg's own tools can resume mmsnn configs). Importing mmsnn changes
nothing.
"""
import os
import os.path as osp
import re

import torch

from . import safe_pickle
from .errors import MMSNNUserError
from .paths import is_remote


def _mmengine_safe_globals():
    """:func:`safe_pickle.mmengine_globals` as torch's allow-list: objects, or
    ``(object, 'module.name')`` where the file names it otherwise (torch >= 2.5)."""
    listed = []
    for name, obj in safe_pickle.mmengine_globals().items():
        own = f'{getattr(obj, "__module__", "")}.{getattr(obj, "__qualname__", "")}'
        listed.append(obj if own == name else (obj, name))
    return listed


def mmengine_checkpoint_globals():
    """Context manager: ``torch.load(weights_only=True)`` reads mmengine's checkpoint objects.

    For mmengine's own ``torch.load`` (resume, inferencers): torch >= 2.6 loads with
    ``weights_only=True`` by default. mmsnn's own reads use :func:`load_checkpoint_file`.

    On torch < 2.5 (no allow-list context) it is :func:`allow_mmengine_checkpoints`.
    """
    import contextlib
    context = getattr(torch.serialization, 'safe_globals', None)
    if context is None:
        allow_mmengine_checkpoints()
        return contextlib.nullcontext()
    return context(_mmengine_safe_globals())


def allow_mmengine_checkpoints():
    """Let ``torch.load(weights_only=True)`` read mmengine's objects for the whole process."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has no allow-list and loads everything anyway
        add(_mmengine_safe_globals())


class CheckpointReadError(RuntimeError):
    """A checkpoint file that cannot be read. ``damaged`` tells a cut-short or corrupted
    file (a run killed while saving) from one that holds objects mmsnn does not load."""

    def __init__(self, message, path, reason, damaged):
        super().__init__(message)
        self.path, self.reason, self.damaged = path, reason, damaged


def _refused_global(exc):
    """What a safe load refused: ``it pickles <global>`` or the getattr stand-in's message;
    None when the file is damaged rather than foreign."""
    text = str(exc)
    found = re.search(r'GLOBAL ([\w.]+)', text)  # "Unsupported global: GLOBAL x" and
    if found:  # "unsupported GLOBAL posix.system whose module posix is blocked"
        return f'it pickles {found.group(1)}, which is not allowed'
    return next((ln.strip() for ln in text.splitlines() if 'refusing getattr' in ln), None)


def _torch_forces_weights_only():
    """``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` set: torch >= 2.6 then refuses a ``pickle_module``."""
    return os.environ.get('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '0').lower() in ('1', 'y', 'yes',
                                                                            'true')


def load_checkpoint_file(path, map_location='cpu'):
    """``torch.load`` through mmsnn's restricted unpickler (:mod:`mmsnn.utils.safe_pickle`,
    the same on every torch), with a clear error for a missing or unreadable file.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointReadError: the file is damaged, or holds objects that are not allowed.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist; check the path given as '
                                'init_cfg.checkpoint / --checkpoint / load_from')
    try:
        if _torch_forces_weights_only():  # torch's own safe loader, with the same allow-list
            with mmengine_checkpoint_globals():
                return torch.load(path, map_location=map_location, weights_only=True)
        # weights_only=False only because torch accepts no pickle_module otherwise: the
        # restricted unpickler is what keeps the load safe
        return torch.load(path, map_location=map_location, pickle_module=safe_pickle,
                          weights_only=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the cause and the fix named
        lines = str(e).splitlines()
        reason = f'{type(e).__name__}: {lines[0] if lines else "file ends early"}'
        detail = _refused_global(e)
        if detail:
            raise CheckpointReadError(
                f'could not read checkpoint {path!r} safely ({detail}). mmsnn loads only '
                'tensors, containers, argparse.Namespace, numpy scalars/arrays and mmengine\'s '
                'own objects; if you trust the file, re-save its weights with '
                'torch.save(state_dict) first.', path, detail, damaged=False) from e
        raise CheckpointReadError(
            f'could not read checkpoint {path!r}: the file is damaged or incomplete '
            f'({reason}); a run killed while it was saving leaves such a file.', path, reason,
            damaged=True) from e


#: keys only a released reference detector / segmentor has (mmsnn.models.reference_conversion maps them)
_REFERENCE_LAYOUT = re.compile(r'\.1\.module\.|^decode_head\.scale_heads\.\d+\.\d+\.[12]\.')


def state_dict_diff(model_state, checkpoint_state):
    """How a checkpoint's state dict differs from a model's (the one key diff of mmsnn).

    Returns ``(missing, unexpected, wrong_shape)``: keys of the model absent from the
    checkpoint (model order), keys of the checkpoint the model lacks (checkpoint order), and
    ``(key, checkpoint shape, model shape)`` for tensors present in both with other shapes.
    """
    missing = [k for k in model_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in model_state]
    wrong_shape = [(k, tuple(v.shape), tuple(model_state[k].shape))
                   for k, v in checkpoint_state.items()
                   if k in model_state and hasattr(v, 'shape')
                   and tuple(v.shape) != tuple(model_state[k].shape)]
    return missing, unexpected, wrong_shape


def check_checkpoint_file(path, what='checkpoint'):
    """A local checkpoint path exists (URLs are left to mmengine)."""
    if path is None or is_remote(path):
        return
    if not osp.isfile(path):
        kind = 'a directory' if osp.isdir(path) else 'not there'
        raise MMSNNUserError(
            f'{what} {path!r} is {kind}.\n'
            '  fix: pass the path of a .pth file written by tools/train.py '
            '(e.g. work_dirs/<config>/iter_N.pth or epoch_N.pth).')


def load_checkpoint_safely(path):
    """Load a local checkpoint with torch's safe loader; unreadable files are user errors."""
    try:
        return load_checkpoint_file(path)
    except (FileNotFoundError, RuntimeError) as e:
        raise MMSNNUserError(str(e)) from None


def _listing(title, keys, limit=8):
    if not keys:
        return []
    lines = [f'    {title} ({len(keys)}):'] + [f'      {k}' for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f'      ... and {len(keys) - limit} more')
    return lines


def check_checkpoint_fits(model, path, purpose='load_from', checkpoint=None):
    """The checkpoint at ``path`` has exactly the model's keys and shapes.

    ``purpose`` is 'test', 'resume' or 'load_from' (for the message). A resumed checkpoint
    must also hold the training state mmengine writes (``meta``, ``message_hub``).
    ``checkpoint``: the already loaded file, if the caller has it. Returns the checkpoint.
    """
    if path is None or is_remote(path):
        return None
    check_checkpoint_file(path, {'test': 'checkpoint', 'resume': '--resume checkpoint',
                                 'load_from': 'load_from checkpoint'}.get(purpose, 'checkpoint'))
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    ckpt = load_checkpoint_safely(path) if checkpoint is None else checkpoint
    if not isinstance(ckpt, dict):
        raise MMSNNUserError(f'{path!r} holds a {type(ckpt).__name__}, not a checkpoint dict '
                             '(state_dict of tensors).')
    sd = ckpt.get('state_dict', ckpt)
    sd = {(k[7:] if k.startswith('module.') else k): v for k, v in sd.items()}
    missing, unexpected, wrong = state_dict_diff(model.state_dict(), sd)
    if missing or unexpected or wrong:
        lines = [f'checkpoint {path!r} does not fit the model {type(model).__name__} of this '
                 'config:']
        lines += _listing('wrongly shaped', sorted(f'{k}: checkpoint {c} vs model {m}'
                                                   for k, c, m in wrong))
        lines += _listing('missing in the checkpoint', sorted(missing))
        lines += _listing('unexpected in the checkpoint', sorted(unexpected))
        lines.append('  fix: use the checkpoint trained with this config (same model, '
                     'num_classes, embed_dims/arch), or the config it was trained with.')
        if any(_REFERENCE_LAYOUT.search(k) for k in unexpected):
            lines.append('  It looks like a released reference detector / segmentor: convert '
                         'it first (python tools/convert_reference.py SRC DST --task det|seg) '
                         'and use a config of configs/det/reference or configs/seg/reference.')
        if purpose == 'load_from':
            lines.append('  To start from part of the weights (e.g. a pretrained backbone), '
                         "set model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH) "
                         'instead of load_from; it loads what fits and names the rest.')
        raise MMSNNUserError('\n'.join(lines))
    if purpose == 'resume':
        absent = [k for k in ('meta', 'message_hub') if k not in ckpt]
        if absent or not isinstance(ckpt.get('meta'), dict) or 'iter' not in ckpt['meta']:
            raise MMSNNUserError(
                f'--resume {path!r}: the file holds weights only, not a training state '
                f'(no {", ".join(absent) or "meta.iter"}), so training cannot continue from it.\n'
                f'  fix: start a new run from its weights with --cfg-options load_from={path} '
                '(without --resume).')
    return ckpt
