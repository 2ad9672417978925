"""Checks of the folders and files a run writes (work dir, ``--out``), before it writes them.

The checks only read: nothing here creates, moves or deletes a user's files (a writability
probe is a temporary file, removed at once).
"""
import os
import os.path as osp
import re
import tempfile

from .errors import MMSNNUserError

_REMOTE = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*://')


def is_remote(path):
    """``path`` is a URL (``http://``, ``s3://`` ...), left to mmengine's file backends."""
    return bool(_REMOTE.match(str(path)))


def check_writable_dir(path, what='work dir', flag='--work-dir'):
    """``path`` is (or can be created as) a directory this process can write to.

    Nothing is created: an existing folder is probed with a temporary file that is removed
    at once; for a missing one, the nearest existing parent must be a writable folder.
    """
    path = osp.abspath(path)
    fix = (f'  fix: pass a folder you can write to with {flag}, or change the permissions '
           'of the existing one.')
    if osp.exists(path):
        if not osp.isdir(path):
            raise MMSNNUserError(
                f'{what} {path!r} cannot be used: a file of that name is in the way.\n'
                f'  fix: pass another {flag}, or move the file away.')
        try:
            fd, probe = tempfile.mkstemp(prefix='.mmsnn_write_test_', dir=path)
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            raise MMSNNUserError(
                f'{what} {path!r} is not writable ({e.strerror or e}).\n{fix}') from None
        return
    parent = path
    while not osp.exists(parent):
        up = osp.dirname(parent)
        if up == parent:
            break
        parent = up
    if not osp.isdir(parent):
        raise MMSNNUserError(
            f'{what} {path!r} cannot be created: {parent!r} is a file, not a folder.\n'
            f'  fix: pass another {flag}, or move the file away.')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MMSNNUserError(
            f'{what} {path!r} cannot be created: no write permission in {parent!r}.\n{fix}')


def check_out_file(path, overwrite=False):
    """``tools/test.py --out FILE``: a pickle path that would not replace earlier results."""
    if not str(path).endswith(('.pkl', '.pickle')):
        raise MMSNNUserError(
            f'--out {path!r}: predictions are dumped as a pickle.\n'
            '  fix: give a file name ending in .pkl, e.g. --out results.pkl')
    if osp.isdir(path):
        raise MMSNNUserError(f'--out {path!r} is a directory.\n'
                             '  fix: give a file name ending in .pkl inside it.')
    if osp.exists(path) and not overwrite:
        raise MMSNNUserError(
            f'--out {path!r} already exists; it may hold earlier results.\n'
            '  fix: choose another file name, or pass --overwrite to replace it.')
    check_writable_dir(osp.dirname(osp.abspath(path)), what='the folder of --out', flag='--out')


def check_work_dir_keeps_config(work_dir, config):
    """The run dumps its merged config into the work dir; never over the user's config."""
    dumped = osp.join(work_dir, osp.basename(config))
    if osp.exists(dumped) and osp.samefile(dumped, config):
        raise MMSNNUserError(
            f'work dir {work_dir!r} is the folder of the config {config!r}; the run would '
            'overwrite the config with its merged copy.\n'
            '  fix: pass another --work-dir (the default is ./work_dirs/<config name>).')
