"""One measurement per process: the driver that starts a measuring process and reads its
result, and the peak-memory reading inside it.

Every benchmark script runs each variant in a fresh process of its own (itself, with hidden
child flags): peaks of different variants must not mix, and the fast path's allocator setting
is process-wide. That is why the timings are per process rather than one
``torch.utils.benchmark.Timer`` loop in the driver. A measuring process prints its result as
one JSON line, the last line of its stdout.

A measuring process reads its peak memory on its first (warm-up) step, with glibc's mmap
threshold fixed so that the RSS follows the live tensors, and then times its steps with glibc's
thresholds where its default rule settles, as in a user's training run
(:func:`peak_of_first_step`). Until 2026-12 the whole process ran with
``MALLOC_MMAP_THRESHOLD_=131072``; that made every large tensor fault in fresh pages, and the
l-SRB train step at 800x1216 took ~70% more CPU time than in a training run: the "training
slowdown" of the round that introduced it (``.notes/speed.md``). Reading the peak on an extra
step *after* timed steps under the default does not work either: the heap glibc kept from them
inflates it (T=1 backbone-s 384x640: 515 MiB against 288).
"""
import json
import os
import resource
import subprocess


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


_PAGE_MIB = os.sysconf('SC_PAGE_SIZE') / 2**20 if hasattr(os, 'sysconf') else 0.0


def rss_mib():
    """This process's resident memory now (MiB)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * _PAGE_MIB


def reset_peak_rss_mark():
    """Reset the kernel's peak-RSS mark (VmHWM) of this process to its RSS now (OSError where
    the kernel does not offer it)."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # VmHWM := the current RSS


def peak_rss_mark_mib():
    """The kernel's peak-RSS mark (VmHWM) of this process (MiB)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024  # kB
    raise OSError('no VmHWM in /proc/self/status')


def memory_base(device):
    """What is in use before a measurement: CUDA allocations, or this process's RSS (MiB)."""
    import torch
    if device.type == 'cuda':
        return torch.cuda.memory_allocated()
    return rss_mib()


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS, where the kernel offers it
    (elsewhere the peak read after it covers the whole process)."""
    try:
        reset_peak_rss_mark()
    except OSError:
        pass


def _vm_hwm_mib():
    try:
        return peak_rss_mark_mib()
    except OSError:
        return peak_rss_mib()


def peak_of_first_step(step, device, manage_allocator=True):
    """Run ``step()`` once (the warm-up) and return its peak memory in MiB above what was in
    use just before it (the built model, its input, the Python runtime).

    On the CPU, with ``manage_allocator``, the step runs with glibc's mmap threshold fixed
    (freed tensors leave the RSS at once: the peak counts live memory), and afterwards the
    thresholds are set where glibc's default rule settles, for the timed steps
    (``mmsnn.deploy.allocator``), and the step runs once more, untimed, so that glibc's heap
    has grown to the step's size before the timed steps (the peak step's large blocks were
    mapped and unmapped, not kept in the heap). Without ``manage_allocator`` (an allocator
    chosen through the environment) nothing is changed. On CUDA: ``max_memory_allocated`` of
    the step.
    """
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from mmsnn.deploy.allocator import fix_mmap_threshold, settle_mmap_threshold
    if manage_allocator:
        fix_mmap_threshold()
    base = memory_base(device)
    _reset_peak_rss()
    step()
    peak = _vm_hwm_mib() - base
    if manage_allocator:
        settle_mmap_threshold()
        step()
    return peak


def peak_rss_mib():
    """This process's peak resident memory so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
