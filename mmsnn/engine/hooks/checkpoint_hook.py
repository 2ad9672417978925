"""mmengine's ``CheckpointHook`` with writes that survive a kill, and resume under torch >= 2.6.

mmengine 0.10.7 writes a checkpoint in place (``open(path, 'wb')``), so a run killed while
saving leaves a cut-short newest checkpoint, and with ``max_keep_ckpts`` it deletes the
oldest checkpoint *before* the new one is written. :class:`AtomicCheckpointHook` writes the
checkpoint and ``last_checkpoint`` through :mod:`mmsnn.utils.atomic` (temporary file in the
same folder, flushed, renamed), names the new checkpoint in ``last_checkpoint`` only once it
is complete, and only then drops the oldest one. ``tools/train.py`` uses it in place of
``CheckpointHook``; with mmdet's / mmseg's own tools put
``default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', ...))`` in the config.
"""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from ...registry import register
from ...utils.atomic import atomic_write
from ...utils.checkpoint import allow_mmengine_checkpoints

#: the mmengine file backend name under which checkpoints are written atomically
ATOMIC_BACKEND = 'mmsnn_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` / ``put_text`` are atomic."""

    def put(self, obj, filepath):
        atomic_write(filepath, obj)

    def put_text(self, obj, filepath, encoding='utf-8'):
        atomic_write(filepath, obj, encoding=encoding)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend)


@register('hook')
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose saves a kill cannot leave half-written.

    Checkpoints on remote storage (``backend_args`` or ``file_client_args`` given) are
    written as mmengine does.
    """

    def before_run(self, runner):
        # mmengine resumes with plain torch.load right after before_run
        allow_mmengine_checkpoints()
        super().before_run(runner)

    def before_train(self, runner):
        super().before_train(runner)
        self._atomic = self.backend_args is None and self.file_client_args is None \
            and isinstance(self.file_backend, LocalBackend)
        if self._atomic:  # also for the best checkpoints (save_best)
            self.file_backend = AtomicLocalBackend()
            self.backend_args = dict(backend=ATOMIC_BACKEND)

    def _save_checkpoint_with_step(self, runner, step, meta):
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta,
            by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        # the new checkpoint is complete: name it, then drop the one it replaces
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if outdated is not None:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed writes folders
                self.file_backend.rmtree(path)


def use_atomic_checkpoints(cfg):
    """Let a config's ``CheckpointHook`` be :class:`AtomicCheckpointHook` (same arguments)."""
    hooks = cfg.get('default_hooks') or {}
    checkpoint = hooks.get('checkpoint')
    if isinstance(checkpoint, dict) and checkpoint.get('type') in (
            'CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
        checkpoint['type'] = 'AtomicCheckpointHook'
    return cfg
