"""Which checkpoint a run continues from, and which earlier checkpoints a new run must not
overwrite. Only reads: nothing here moves or deletes a checkpoint."""
import glob
import os.path as osp
import re

from .errors import MMSNNUserError


def _natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def existing_checkpoints(work_dir):
    """Checkpoint files (``*.pth``) and ``last_checkpoint`` directly in ``work_dir``."""
    if not osp.isdir(work_dir):
        return []
    found = sorted((osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth'))),
                   key=_natural_key)
    if osp.exists(osp.join(work_dir, 'last_checkpoint')):
        found.append('last_checkpoint')
    return found


def check_no_checkpoints_overwritten(work_dir, resume=False, overwrite=False):
    """Training into a work dir that holds an earlier run's checkpoints needs consent."""
    if resume or overwrite:
        return
    found = existing_checkpoints(work_dir)
    if found:
        shown = ', '.join(found[:6]) + (f', ... ({len(found)} files)' if len(found) > 6 else '')
        raise MMSNNUserError(
            f'work dir {work_dir!r} already holds checkpoints of an earlier run ({shown}); '
            'training there would overwrite them.\n'
            '  fix: continue that run with --resume, train into another folder with '
            '--work-dir DIR, or pass --overwrite to replace them.')


def resolve_auto_resume(work_dir):
    """The checkpoint ``--resume`` (auto) continues from, or None when there is nothing.

    Reads ``last_checkpoint`` with mmengine's ``find_latest_checkpoint``, but also finds the
    checkpoint when the work dir was moved (``last_checkpoint`` holds an absolute path), and
    refuses to silently start from scratch over checkpoints that
    ``last_checkpoint`` does not name.
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        from mmengine.runner import find_latest_checkpoint
        target = find_latest_checkpoint(work_dir) or ''
        # a work dir that was moved or copied: its own copy of the named checkpoint
        local = osp.join(work_dir, osp.basename(target)) if target else ''
        if local and osp.isfile(local):
            return local
        if target and osp.isfile(target):
            return target
        raise MMSNNUserError(
            f'--resume: {marker!r} names {target!r}, which does not exist.\n'
            '  fix: pass the checkpoint to continue from explicitly: --resume PATH.pth')
    found = [p for p in existing_checkpoints(work_dir) if p.endswith('.pth')]
    if found:
        raise MMSNNUserError(
            f'--resume: {work_dir!r} has checkpoints ({", ".join(found[:6])}) but no '
            'last_checkpoint file saying which one is the latest.\n'
            f'  fix: name it: --resume {osp.join(work_dir, found[-1])}')
    return None

