"""Stop a diverging run at the first non-finite loss, before anything is saved.

Surrogate-gradient training can go to NaN/inf; mmengine then keeps training and writes NaN
checkpoints (with ``max_keep_ckpts``, over the good ones). mmdet's ``CheckInvalidLossHook``
looks only every 50 iterations and stops with an ``AssertionError`` traceback. This hook
looks after every training iteration, before the checkpoint and logger hooks (priority), and
stops the run with one line naming the iteration and the loss terms; a checkpoint about to be
saved with non-finite weights is refused too. Earlier checkpoints stay as they are.

``tools/train.py`` adds it to every run; ``stop_on_nonfinite_loss = False`` in the config (or
``--cfg-options stop_on_nonfinite_loss=False``) leaves it out.
"""
import math

import torch
from mmengine.hooks import Hook

from ...registry import register
from ...utils.errors import MMSNNUserError

#: the config key that turns the hook off in ``tools/train.py``
ENABLE_KEY = 'stop_on_nonfinite_loss'


def _value(v):
    if isinstance(v, torch.Tensor):
        return v.detach().float().mean().item() if v.numel() else 0.0
    return float(v)


@register('hook')
class NonFiniteLossHook(Hook):
    """Raise :class:`MMSNNUserError` ("non-finite loss at iteration N: loss_x=nan ...") after
    the training iteration whose loss terms (``outputs`` keys containing "loss") are not all
    finite, and before a checkpoint whose weights are not all finite is written."""

    # before CheckpointHook (VERY_LOW) and LoggerHook (BELOW_NORMAL) in after_train_iter
    priority = 'VERY_HIGH'

    def _fix(self, runner):
        last = runner.message_hub.get_info('last_ckpt')
        kept = f'the last checkpoint ({last}) is kept' if last else 'no checkpoint was written'
        return (f'  {kept}. fix: lower the learning rate (optim_wrapper.optimizer.lr), clip '
                'gradients (optim_wrapper.clip_grad=dict(max_norm=...)) or lengthen the '
                'warm-up, then resume from that checkpoint with --resume')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not isinstance(outputs, dict):
            return
        values = {k: _value(v) for k, v in outputs.items() if 'loss' in k}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        # every process stops together: a lone one would leave the others waiting in DDP
        from mmengine.dist import all_reduce
        flag = torch.tensor([float(bool(bad))])
        all_reduce(flag, op='max')
        if flag.item() == 0:
            return
        # the terms first, then their sum ('loss', which mmengine lists first)
        terms = ' '.join(f'{k}={v}' for k, v in sorted((bad or values).items(),
                                                        key=lambda kv: kv[0] == 'loss'))
        where = '' if bad else ' (on another process)'
        raise MMSNNUserError(
            f'non-finite loss at iteration {runner.iter + 1}{where}: {terms}; the run is '
            f'stopped before saving.\n{self._fix(runner)}')

    def before_save_checkpoint(self, runner, checkpoint):
        for key, value in (checkpoint.get('state_dict') or {}).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() \
                    and not torch.isfinite(value).all():
                raise MMSNNUserError(
                    f'the model weights are not finite ({key}) at iteration {runner.iter}: '
                    f'the checkpoint is not written.\n{self._fix(runner)}')


def add_nonfinite_loss_hook(cfg):
    """Add :class:`NonFiniteLossHook` to ``cfg.custom_hooks`` (once) unless the config sets
    ``stop_on_nonfinite_loss = False``. Returns ``cfg``."""
    if not cfg.get(ENABLE_KEY, True):
        return cfg
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(isinstance(h, dict) and h.get('type') in ('NonFiniteLossHook', NonFiniteLossHook)
               for h in hooks):
        hooks.append(dict(type='NonFiniteLossHook'))
    cfg.custom_hooks = hooks
    return cfg
