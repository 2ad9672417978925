"""Files written so that a killed process leaves either the old file or the new one.

A run killed while writing (pre-emption, ``kill -9``, a full disk) must not leave a half
file under the real name: the next run would trust it. Everything is written to a hidden
temporary file in the same folder (``.NAME.tmp-PID``, a name no glob of checkpoints or
results matches), flushed to disk, and renamed over ``NAME``; a rename within one folder is
atomic on POSIX file systems. A killed write leaves the temporary file behind and ``NAME``
as it was; such leftovers are never read and may be deleted.

Use :func:`atomic_open` for writers that take a file object (``np.save``,
``fig.savefig(f, format='png')``, ``json.dump``), or :func:`atomic_write` for bytes / text.
"""
import os
import os.path as osp
from contextlib import contextmanager

TMP_MARK = '.tmp-'


def temporary_name(path):
    """The temporary file :func:`atomic_open` writes before renaming it to ``path``."""
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder, f'.{name}{TMP_MARK}{os.getpid()}')


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a file system without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path, mode='wb', encoding=None, newline=None):
    """``open(path, mode)`` whose content appears under ``path`` only when the block ends
    without an exception (then flushed, fsynced and renamed); otherwise ``path`` is left
    untouched and the temporary file is removed."""
    if not any(c in mode for c in 'wx') or '+' in mode:
        raise ValueError(f'atomic_open writes a new file; mode {mode!r} is not "w"/"wb"')
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = temporary_name(path)
    f = open(tmp, mode.replace('x', 'w'), encoding=encoding, newline=newline)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
        f.close()
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    f.close()
    os.replace(tmp, path)
    _fsync_dir(folder)


def atomic_write(path, data, encoding='utf-8'):
    """Write ``data`` (bytes or str) to ``path`` atomically (see the module docstring)."""
    text = isinstance(data, str)
    with atomic_open(path, 'w' if text else 'wb', encoding=encoding if text else None) as f:
        f.write(data)
