"""The one place where reference checkpoints become MetaSDT state dicts.

mmsnn keeps the reference's module names, so the mapping is about *containers*:

* a bare reference backbone state dict               -> as is
* an ImageNet checkpoint ``{'model': sd}``            -> drop the classifier ``head.*``
* a detector/segmentor ``{'state_dict': sd}``         -> keep ``backbone.*``, strip the prefix
* ``module.`` prefixes (DataParallel / DDP)           -> stripped
"""
import os

import torch

from ..utils.checkpoint import load_checkpoint_file, state_dict_diff

_CLASSIFIER_PREFIXES = ('head.', 'head_spike.', 'fc.')


def _strip(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def convert_reference_checkpoint(checkpoint):
    """Return a state dict with MetaSDT's keys from whatever the user has.

    ``checkpoint`` is a path or an already loaded object (see the module docstring).
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load_checkpoint_file(checkpoint)
    if not isinstance(checkpoint, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    if 'state_dict' in checkpoint and isinstance(checkpoint['state_dict'], dict):
        sd = checkpoint['state_dict']
    elif 'model' in checkpoint and isinstance(checkpoint['model'], dict):
        sd = checkpoint['model']
    else:
        sd = checkpoint
    sd = {k[7:] if k.startswith('module.') else k: v for k, v in sd.items()}
    if any(k.startswith('backbone.') for k in sd):  # detector / segmentor: backbone only
        sd = _strip(sd, 'backbone.')
    return {k: v for k, v in sd.items()
            if torch.is_tensor(v) and not k.startswith(_CLASSIFIER_PREFIXES)}


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model."""


def load_pretrained(model, checkpoint, logger=None, strict=False):
    """Load ``checkpoint`` into ``model`` after conversion, reporting keys by name.

    Shape mismatches and a checkpoint sharing no key with the model raise
    :class:`CheckpointMismatchError`. Missing and unexpected keys are logged (and raise when
    ``strict``). Returns ``(missing, unexpected)``.
    """
    source = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else 'checkpoint'
    sd = convert_reference_checkpoint(checkpoint)
    if hasattr(model, 'checkpoint_filter'):  # per-family key filter beside the model
        sd = model.checkpoint_filter(sd)
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
            f'{sorted(sd)[:3]} vs model {sorted(own)[:3]}). Is it a MetaSDT / Meta-SDT '
            'checkpoint?')
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
