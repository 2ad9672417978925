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

    Reads ``last_checkpoint`` with mmengine's ``find_latest_checkpoint`` and takes the path it
    names when that exists; when the work dir was moved (``last_checkpoint`` holds a path
    that no longer exists) it takes the work dir's file of that name; and it refuses to silently start from scratch over checkpoints that
    ``last_checkpoint`` does not name.
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        from mmengine.runner import find_latest_checkpoint
        target = find_latest_checkpoint(work_dir) or ''
        if target and osp.isfile(target):
            return target
        # a work dir that was moved or copied: its own copy of the named checkpoint
        local = osp.join(work_dir, osp.basename(target)) if target else ''
        if local and osp.isfile(local):
            return local
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


def _newest_first(work_dir, exclude=()):
    """The ``*.pth`` files of ``work_dir``, most recently written first."""
    skip = {osp.abspath(p) for p in exclude}
    paths = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.abspath(p) not in skip]
    return sorted(paths, key=lambda p: (osp.getmtime(p), _natural_key(osp.basename(p))),
                  reverse=True)


def leftover_partial_writes(work_dir):
    """Temporary files of saves that were killed (see :mod:`mmsnn.utils.atomic`)."""
    from .atomic import TMP_MARK
    return sorted(glob.glob(osp.join(glob.escape(work_dir), f'.*{TMP_MARK}*')))


#: what mmengine restores on resume besides the weights; a checkpoint without the optimizer
#: or scheduler state (``best_*.pth``, which mmengine saves without them) would restart
#: momentum and warm-up without a word
RESUME_STATE = ('meta', 'message_hub', 'optimizer', 'param_schedulers')


def missing_resume_state(checkpoint, schedulers=True):
    """The parts of :data:`RESUME_STATE` that ``checkpoint`` lacks (``schedulers``: whether
    the run has parameter schedulers whose state must be restored)."""
    if not isinstance(checkpoint, dict):
        return list(RESUME_STATE)
    needed = RESUME_STATE if schedulers else RESUME_STATE[:-1]
    missing = [k for k in needed if k not in checkpoint]
    meta = checkpoint.get('meta')
    if 'meta' not in missing and not (isinstance(meta, dict) and 'iter' in meta):
        missing[:0] = ['meta.iter']
    return missing


def readable_resume_checkpoint(path, work_dir, log=None, fallback=True, schedulers=True):
    """``(path, checkpoint)`` of the checkpoint a resumed run loads.

    ``path`` is read first. If it cannot be read (cut short by a kill, corrupted, or holding
    objects mmsnn does not load), a warning names the file and why; with ``fallback`` (an
    automatic ``--resume``) the newest readable checkpoint in ``work_dir`` that holds the full
    training state (:func:`missing_resume_state`) is used instead, with a note saying which;
    weights-only files are skipped with a note, and named in the error when nothing else is
    left. Without ``fallback`` (the user named ``path``) it stops. Nothing is deleted or
    renamed. ``log``: where the warnings go (default: stderr).
    """
    import sys

    from .checkpoint_io import CheckpointReadError, load_checkpoint_file
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    failures, weights_only = [], []
    candidates = [path] + (_newest_first(work_dir, exclude=[path]) if fallback else [])
    for i, candidate in enumerate(candidates):
        try:
            checkpoint = load_checkpoint_file(candidate)
        except CheckpointReadError as e:
            what = 'damaged or incomplete' if e.damaged else 'not loadable safely'
            if not fallback:
                raise MMSNNUserError(
                    f'--resume {candidate!r}: the file is {what} ({e.reason}); nothing was '
                    'deleted. fix: pass an intact checkpoint, or --resume without a path to '
                    'continue from the newest complete checkpoint of the work dir.') from None
            log(f'warning: cannot resume from {candidate!r}: the file is {what} ({e.reason}); '
                'it is kept as it is.')
            failures.append((candidate, what, e.reason))
            continue
        missing = missing_resume_state(checkpoint, schedulers)
        if missing and not fallback:
            raise MMSNNUserError(
                f'--resume {candidate!r}: the file holds no {", ".join(missing)} (weights '
                'only), so resuming from it would restart the optimizer and the learning-rate '
                'schedule. fix: start a new run from its weights with --cfg-options '
                f'load_from={candidate} (without --resume), or resume from a full checkpoint '
                '(epoch_*.pth / iter_*.pth).')
        if i == 0 and not missing:
            return candidate, checkpoint
        if missing:
            log(f'note: not resuming from {candidate!r}: it holds no {", ".join(missing)} '
                '(weights only), so the optimizer and the learning-rate schedule would restart.')
            weights_only.append(candidate)
            continue
        log(f'note: resuming from {candidate!r} instead, the newest readable checkpoint '
            f'with the full training state in {work_dir!r}.')
        return candidate, checkpoint
    if weights_only:
        raise MMSNNUserError(
            f'--resume: no readable checkpoint in {work_dir!r} holds the optimizer and '
            f'scheduler state a resume needs ({", ".join(osp.basename(p) for p, _, _ in failures)}'
            f' cannot be read; weights only: {", ".join(map(osp.basename, weights_only))}); '
            f'nothing was deleted. fix: start a new run from those weights with --cfg-options '
            f'load_from={weights_only[0]} (without --resume) and --work-dir NEW_DIR.')
    listing = '\n'.join(f'    {p}: {what} ({reason})' for p, what, reason in failures)
    damaged = all(what.startswith('damaged') for _, what, _ in failures)
    raise MMSNNUserError(
        f'--resume: no checkpoint in {work_dir!r} can be read'
        + ('; the files are damaged (cut short or corrupted, as a run killed while saving '
           'leaves them)' if damaged else '') + f':\n{listing}\n'
        '  Nothing was deleted.\n'
        '  fix: start a new run into another folder (--work-dir DIR), or copy an intact '
        'checkpoint into the work dir and pass it: --resume PATH.pth')
