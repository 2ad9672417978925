"""One measurement per process: the driver that starts a measuring process and reads its
result, and the peak-memory reading inside it.

Every benchmark script runs each variant in a fresh process of its own (itself, with hidden
child flags): peaks of different variants must not mix, and the fast path's allocator setting
is process-wide. That is why the timings are per process rather than one
``torch.utils.benchmark.Timer`` loop in the driver. A measuring process prints its result as
one JSON line, the last line of its stdout.
"""
import json
import os
import resource
import subprocess

#: environment for a measuring child process: glibc raises its mmap threshold after large
#: frees and then keeps freed memory in the heap, so peak RSS would count dead tensors; a
#: fixed threshold returns them to the OS at once.
CHILD_ENV = dict(MALLOC_MMAP_THRESHOLD_='131072')


class MeasurementFailed(RuntimeError):
    """A measuring process exited with an error (``returncode < 0``: killed by a signal,
    e.g. for memory); ``reason`` is one line, ``stderr`` its tail."""

    def __init__(self, what, returncode, stderr):
        self.what, self.returncode, self.stderr = what, returncode, stderr
        self.reason = ('killed (out of memory?)' if returncode < 0 else
                       (stderr.strip().splitlines() or ['?'])[-1][-200:])
        super().__init__(f'measurement {what} failed: exit {returncode}: {self.reason}')


def run_measurement(cmd, what, env=None, cwd=None, show_stderr=False):
    """Run one measuring process and return the JSON result of its last stdout line; raises
    :class:`MeasurementFailed`. ``env`` is added to this process's environment; with
    ``show_stderr`` the process's stderr (a profile's op table) is printed."""
    full_env = dict(os.environ, **env) if env else None
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd)
    if out.returncode:
        raise MeasurementFailed(what, out.returncode, out.stderr)
    if show_stderr:
        print(out.stderr[-6000:], flush=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_result(result):
    """A measuring process's answer to its driver (the last line of its stdout)."""
    print(json.dumps(result))


def memory_base(device):
    """What is in use before a measurement: CUDA allocations, or this process's RSS (MiB)."""
    import torch
    if device.type == 'cuda':
        return torch.cuda.memory_allocated()
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_above(base, device):
    """Peak memory (MiB) since the process started, above ``base`` from :func:`memory_base`."""
    import torch
    if device.type == 'cuda':
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base  # KiB on Linux


def peak_rss_mib():
    """This process's peak resident memory so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
