"""Run tool command lines as programs (``__main__``) for the tests' ``run_tool`` and
``run_tool_each`` fixtures (tests/conftest.py), in one of two ways:

- ``python tool_runs.py RUNS_JSON``: in this new interpreter, one run after the other; prints
  the results as the last line.
- ``python tool_runs.py --serve``: a warm interpreter for a pytest worker. It imports the
  toolboxes every tool needs (torch, mmengine, mmcv, mmdet, mmseg: ~7 s of each tool's start
  on a 2-core machine), then for each request line forks a child that does the runs. The
  child is a fresh copy of an interpreter that has run nothing: mmsnn and the tests' toy
  modules are not imported yet (a tool or config that forgets to import them still fails),
  its random states are new, nothing one request does is seen by the next, and it ends with
  an interpreter's exit steps (threads joined, atexit functions, a collection). Requests and
  replies are JSON lines on stdin and stdout.

Each run gets ``sys.argv`` and ``sys.path[0]`` as ``python`` gives them to a script (its
folder) or a module (``-m NAME``: the cwd), and its exit status, stdout and stderr are caught
at the file descriptors, so that loggers and C code holding the original streams are caught
too.
"""
import atexit
import ctypes
import gc
import json
import os
import runpy
import signal
import sys
import tempfile
import threading
import time
import traceback

#: imported once by the warm interpreter, before any fork: the third-party part of a tool's
#: start-up (not mmsnn: its registration at import is part of what the tools are tested for)
WARM_IMPORTS = ('torch', 'mmengine.runner', 'mmcv.cnn', 'mmcv.ops', 'mmdet.models',
                'mmseg.models')


def run_each(runs, out_dir=None):
    """[(script, argv), ...] -> [[exit status, stdout, stderr], ...]; ``script`` a path, or
    ``-m NAME`` for a module run as ``python -m NAME`` does. With ``out_dir``, run i's output
    goes to ``out_dir/i.out`` and ``i.err``, where it can be read if the process dies."""
    saved, results = (os.dup(1), os.dup(2)), []
    for i, (script, argv) in enumerate(runs):
        files = ((tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')) if out_dir is None
                 else (open(os.path.join(out_dir, f'{i}.out'), 'w+'),
                       open(os.path.join(out_dir, f'{i}.err'), 'w+')))
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
        for f in files:
            f.close()
    return results


def _child(request):
    """In the forked child: the runs, their results written to ``out_dir/result.json``; then
    an interpreter's exit (threads joined, atexit functions, a last collection)."""
    os.setpgid(0, 0)  # its own group: a timeout kills the tools' own children with it
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the server gone, the child goes too
    out_dir = request['out_dir']
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # never the server's pipes (fd 1 is its reply channel): what is printed outside the runs
    # (at exit, say) goes to a file beside theirs
    rest = os.open(os.path.join(out_dir, 'child.log'), os.O_WRONLY | os.O_CREAT, 0o644)
    os.dup2(rest, 1), os.dup2(rest, 2)
    os.close(rest)
    # the forked random states would be the same in every run: draw new ones, as a new
    # process does (Python's ``random`` reseeds itself at fork)
    import numpy
    import torch
    numpy.random.seed()
    torch.seed()
    os.chdir(request['cwd'])
    try:
        results = run_each(request['runs'], out_dir)
        with open(os.path.join(out_dir, 'result.json'), 'w') as f:
            json.dump(results, f)
    except BaseException:
        traceback.print_exc()
        os._exit(3)
    # the steps of an interpreter's exit that a tool's behaviour can depend on: non-daemon
    # threads joined, atexit functions, finalisers of what the runs left in cycles. Not the
    # teardown of every module (sys.exit): that took 1 s per run for nothing a tool sees
    threading._shutdown()
    atexit._run_exitfuncs()
    gc.collect()
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


def serve():
    """Answer request lines {"runs", "cwd", "timeout", "out_dir"} with {"status": "done" |
    "timeout" | "died", "exit": the child's exit status} until stdin closes."""
    for name in WARM_IMPORTS:
        __import__(name)
    # the imported objects out of the collector's sight: a collection in a child would
    # otherwise touch, and so copy, every page of the heap they share (0.3 s per run)
    gc.freeze()
    print(json.dumps({'status': 'ready'}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        try:
            os.setpgid(pid, pid)  # (the child does it too: whichever runs first)
        except OSError:  # the child has already exited
            pass
        deadline, status, exit_code = time.monotonic() + request['timeout'], None, None
        try:
            while status is None:
                done, wait_status = os.waitpid(pid, os.WNOHANG)
                if done:
                    exit_code = os.waitstatus_to_exitcode(wait_status)
                    status = 'done' if exit_code == 0 else 'died'
                elif time.monotonic() > deadline:
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    status = 'timeout'
                else:
                    time.sleep(0.02)
        finally:
            if status is None:  # the server itself interrupted: no run outlives it
                os.killpg(pid, signal.SIGKILL)
        print(json.dumps({'status': status, 'exit': exit_code}), flush=True)


if __name__ == '__main__':
    if sys.argv[1:] == ['--serve']:
        serve()
    else:
        print(json.dumps(run_each(json.loads(sys.argv[1]))))
