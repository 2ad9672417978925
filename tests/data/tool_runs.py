"""Run tool command lines as programs (``__main__``) for the tests' ``run_tool`` and
``run_tool_each`` fixtures (tests/conftest.py), in one of two ways:

- ``python tool_runs.py RUNS_JSON``: in this new interpreter, one run after the other; prints
  the results as the last line.
- ``python tool_runs.py --serve``: a warm interpreter for a pytest worker. It imports the
  toolboxes every tool needs (torch, mmengine, mmcv, mmdet, mmseg: ~7 s of each tool's start
  on a 2-core machine), then for each request line forks a child that does the runs. The
  child is a fresh copy of an interpreter that has run nothing: mmsnn and the tests' toy
  modules are not imported yet (a tool or config that forgets to import them still fails), and
  nothing one request does is seen by the next. Requests and replies are JSON lines on stdin
  and stdout.

Each run gets ``sys.argv`` and ``sys.path[0]`` as ``python`` gives them to a script (its
folder) or a module (``-m NAME``: the cwd), and its exit status, stdout and stderr are caught
at the file descriptors, so that loggers and C code holding the original streams are caught
too.
"""
import atexit
import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback

#: imported once by the warm interpreter, before any fork: the third-party part of a tool's
#: start-up (not mmsnn: its registration at import is part of what the tools are tested for)
WARM_IMPORTS = ('torch', 'mmengine.runner', 'mmcv.cnn', 'mmcv.ops', 'mmdet.models',
                'mmseg.models')


def run_each(runs):
    """[(script, argv), ...] -> [[exit status, stdout, stderr], ...]; ``script`` a path, or
    ``-m NAME`` for a module run as ``python -m NAME`` does."""
    saved, results = (os.dup(1), os.dup(2)), []
    for script, argv in runs:
        files = tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(files[0].fileno(), 1), os.dup2(files[1].fileno(), 2)
        sys.argv = [script] + list(argv)
        sys.path[0] = os.getcwd() if script.startswith('-m ') else os.path.dirname(script)
        try:
            if script.startswith('-m '):
                runpy.run_module(script[3:], run_name='__main__', alter_sys=True)
            else:
                runpy.run_path(script, run_name='__main__')
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for f in files:
            f.seek(0)
        results.append([code, files[0].read(), files[1].read()])
    return results


def _child(request):
    """In the forked child: the runs, their results written to ``request['result']``."""
    os.setpgid(0, 0)  # its own group: a timeout kills the tools' own children with it
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # never the server's pipes (fd 1 is its reply channel)
        os.dup2(null, fd)
    os.chdir(request['cwd'])
    code = 0
    try:
        results = run_each(request['runs'])
        with open(request['result'], 'w') as f:
            json.dump(results, f)
        atexit._run_exitfuncs()  # what the runs left for the interpreter's exit (files, say)
    except BaseException:
        code = 3
    finally:
        os._exit(code)  # not the server's loop: the child ends here


def serve():
    """Answer request lines {"runs", "cwd", "timeout", "result"} with {"status": "done" |
    "timeout" | "died"} until stdin closes."""
    for name in WARM_IMPORTS:
        __import__(name)
    print(json.dumps({'status': 'ready'}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        try:  # (the child does it too: whichever runs first)
            os.setpgid(pid, pid)
        except OSError:  # the child has already exec'd or exited
            pass
        deadline, status = time.monotonic() + request['timeout'], None
        while status is None:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                ok = os.waitstatus_to_exitcode(wait_status) == 0
                status = 'done' if ok and os.path.isfile(request['result']) else 'died'
            elif time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = 'timeout'
            else:
                time.sleep(0.02)
        print(json.dumps({'status': status}), flush=True)


if __name__ == '__main__':
    if sys.argv[1:] == ['--serve']:
        serve()
    else:
        print(json.dumps(run_each(json.loads(sys.argv[1]))))
