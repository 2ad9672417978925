"""Helpers of the tests that run the tools (tools/*.py and their code in mmsnn.cli)."""
import importlib
import os.path as osp

import pytest

TOY = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_config.py')


def assert_user_error(proc, *needles):
    """Exit status 2, one ``error:`` message containing ``needles``, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count('error: ') == 1, proc.stderr[-3000:]
    message = proc.stderr[proc.stderr.index('error: '):]
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def load_tool(name):
    """The code of ``tools/<name>.py``, which lives in ``mmsnn.cli.<name>`` (the script is a
    launcher over it)."""
    import importlib
    return importlib.import_module(f'mmsnn.cli.{name}')


def tool_error(tool, argv, capsys):
    """Run a tool's main() in-process, expecting a user error; return its message."""
    with pytest.raises(SystemExit) as exc:
        tool.main([str(a) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count('error: ') == 1 and 'Traceback' not in err, err
    return err
