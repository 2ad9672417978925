"""The one error type for bad user input, and how every mmsnn tool reports it.

Checks anywhere in mmsnn raise :class:`MMSNNUserError` with a message that names the problem
and the fix. The tools run their body through :func:`run_tool`, which prints the message as
one ``error: ...`` block on stderr and exits with status 2, without a traceback (a traceback
would point at mmsnn's code, not at the user's input).
"""
import os
import os.path as osp
import sys


class MMSNNUserError(Exception):
    """Bad input from the user (config, paths, checkpoints); the message names the fix."""


#: functions ``KeyError -> MMSNNUserError or None`` that recognise a ``KeyError`` as a user's
#: mistake. ``mmsnn.registry`` adds the unknown-type explainer when it is imported (it is
#: imported with ``mmsnn``): utils sits below the registry and does not import it.
_KEY_ERROR_EXPLAINERS = []


def explains_key_errors(fn):
    """Decorator: :func:`run_tool` asks ``fn(exc)`` whether a ``KeyError`` is a user error."""
    _KEY_ERROR_EXPLAINERS.append(fn)
    return fn


def fail(message, code=2):
    """Print ``error: message`` to stderr and exit with ``code`` (no traceback).

    Under ``tools/dist_*.sh`` (``MMSNN_ERROR_DIR`` set) every process would print the same
    message; each writes it to ``$MMSNN_ERROR_DIR/rank<R>.txt`` instead and the script
    prints one of them once torchrun has stopped.
    """
    text = f'error: {message}\n'
    err_dir = os.environ.get('MMSNN_ERROR_DIR')
    if err_dir and osp.isdir(err_dir):
        rank = os.environ.get('RANK', '0')
        try:
            tmp = osp.join(err_dir, f'.rank{rank}.tmp')
            with open(tmp, 'w') as f:
                f.write(text)
            os.replace(tmp, osp.join(err_dir, f'rank{rank}.txt'))
            raise SystemExit(code)
        except OSError:
            pass  # fall back to printing
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()
    raise SystemExit(code)


def _own_message(exc):
    """The message ``exc`` was raised with, also when a DataLoader worker raised it: torch
    re-raises that as ``type(exc)("Caught ... in DataLoader worker ...Original Traceback
    ...: message")``."""
    text = str(exc)
    marker = f'{type(exc).__name__}: '
    if 'Original Traceback' in text and marker in text:
        return text[text.rindex(marker) + len(marker):].rstrip()
    return text


def run_tool(fn, *args, **kwargs):
    """Run a tool's body; user errors (ours, and unknown registry types) end in :func:`fail`."""
    try:
        return fn(*args, **kwargs)
    except MMSNNUserError as e:
        fail(_own_message(e))
    except KeyError as e:
        explained = next((user_error for user_error in (explain(e) for explain in
                                                        _KEY_ERROR_EXPLAINERS)
                          if user_error is not None), None)
        if explained is None:
            raise
        fail(str(explained))
