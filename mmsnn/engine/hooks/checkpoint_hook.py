"""mmengine's ``CheckpointHook`` with writes that survive a kill, and resume under torch >= 2.6.

mmengine 0.10.7 writes a checkpoint in place (``open(path, 'wb')``), so a run killed while
saving leaves a cut-short newest checkpoint, and with ``max_keep_ckpts`` it deletes the
oldest checkpoint *before* the new one is written. :class:`AtomicCheckpointHook` writes the
checkpoint and ``last_checkpoint`` through :mod:`mmsnn.utils.atomic` (temporary file in the
same folder, flushed, renamed), names the new checkpoint in ``last_checkpoint`` only once it
is complete, and only then drops the oldest one; a new best checkpoint (``save_best``) is
likewise written before the previous best is removed. ``tools/train.py`` uses it in place of
``CheckpointHook``; with mmdet's / mmseg's own tools put
``default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', ...))`` in the config.
"""
import os.path as osp
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from ...registry import register
from ...utils.atomic import atomic_write
from ...utils.checkpoint_io import allow_mmengine_checkpoints

#: the mmengine file backend name under which checkpoints are written atomically
ATOMIC_BACKEND = 'mmsnn_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` / ``put_text`` are atomic, and whose
    removals can wait until the files that replace them are written
    (:meth:`removals_deferred`)."""

    _deferred = None  # the removals waiting for the end of removals_deferred()

    def put(self, obj, filepath):
        atomic_write(filepath, obj)

    def put_text(self, obj, filepath, encoding='utf-8'):
        atomic_write(filepath, obj, encoding=encoding)

    def remove(self, filepath):
        if self._deferred is None:
            super().remove(filepath)
        else:
            self._deferred.append((filepath, super().remove))

    def rmtree(self, dir_path):
        if self._deferred is None:
            super().rmtree(dir_path)
        else:
            self._deferred.append((dir_path, super().rmtree))

    @contextmanager
    def removals_deferred(self, keep=lambda: ()):
        """Removals asked for inside the block happen at its end, after everything it
        wrote; if the block fails (or the process is killed) nothing is removed. ``keep()``
        (called at the end): paths that were written anew in the block, not to remove."""
        if self._deferred is not None:  # nested: the outer block removes
            yield
            return
        self._deferred = []
        try:
            yield
            removals = self._deferred
        finally:
            self._deferred = None
        kept = {osp.abspath(p) for p in keep() if p}
        for path, remove in removals:
            if osp.abspath(path) not in kept and osp.lexists(path):
                remove(path)


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

    def _save_best_checkpoint(self, runner, metrics):
        # mmengine removes the previous best checkpoint before it writes the new one; a kill
        # in between would leave none. The removal waits until the new one is complete.
        if getattr(self, '_atomic', False):
            with self.file_backend.removals_deferred(keep=self._current_checkpoints):
                super()._save_best_checkpoint(runner, metrics)
        else:
            super()._save_best_checkpoint(runner, metrics)

    def _current_checkpoints(self):
        """The checkpoints this hook names now (latest and best): never removed."""
        best = [getattr(self, 'best_ckpt_path', None)]
        best += list((getattr(self, 'best_ckpt_path_dict', None) or {}).values())
        return [self.last_ckpt] + best

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
