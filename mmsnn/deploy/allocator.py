"""Let a CPU process (inference or training) reuse the memory it frees instead of returning it.

glibc's ``malloc`` serves every request above its mmap threshold (which it raises after large
frees, but never above 32 MiB) with fresh pages from ``mmap`` and returns them with ``munmap``
on free. PyTorch's CPU allocator takes its tensors from ``malloc``, so at COCO size, where one
spiking feature map is 30-160 MB, every layer of every forward pass maps new pages that the
kernel must fault in and zero before the first write -- work that shows up in the profile as
slow convolutions and element-wise ops. In the s-size SRB backbone at 800x1216 (eval, no grad,
2 threads) this is about 30% of the time (``tools/analysis/benchmark_backbone.py --fast-path``
measures it: the ``fused`` and ``fast`` rows differ only in this setting).

:func:`keep_freed_memory` switches glibc to serving all requests from its heap
(``M_MMAP_MAX = 0``) and to trimming the heap only when more than 2 GiB lie free at its top
(``M_TRIM_THRESHOLD``, the largest value it takes): after the first few forward passes (while
its heap grows to fit the requests' sizes) the process reuses its own, already mapped pages.
The numbers computed do not change. The cost is memory: the process keeps its peak heap until
it exits, but for what exceeds 2 GiB free at the top (the benchmarks print the peak RSS with
and without). The setting is process-wide and cannot be undone for the process, so nothing
turns it on by default: ``tools/test.py --keep-freed-memory`` and ``tools/train.py
--keep-freed-memory`` (CPU runs only) and the ``fast`` variant of the fast-path benchmarks
ask for it. Processes forked after it (DataLoader workers)
get glibc's default limits back (:func:`_give_back_in_child`): they do not run the model, and
each would otherwise keep its own peak heap. The environment variables
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<bytes>`` have the same effect for any process
(and for its children).

:func:`fix_mmap_threshold` is the opposite setting, for reading a peak: every freed block above
128 KiB goes back to the OS at once, so the RSS counts live memory only. It makes every large
allocation fault in fresh pages, which costs a training step at COCO size ~70% more CPU time
(``.notes/speed.md``), so the benchmarks read their peak on the first step only and then call
:func:`settle_mmap_threshold` for the timed steps.
"""
import ctypes
import ctypes.util
import functools
import os
import sys

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
#: the largest trim threshold mallopt takes (a C int): 2 GiB - 1 byte. The heap is trimmed
#: only when more than this lies free at its top, so up to 2 GiB of freed memory is kept.
_NEVER_TRIM = 2**31 - 1
#: glibc's defaults (malloc/malloc.c: DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_THRESHOLD = 128 * 1024
#: where glibc's dynamic rule settles once it has freed a mapped block of 32 MiB or more
#: (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit; the trim threshold follows at twice the threshold)
_SETTLED_MMAP_THRESHOLD = 32 * 2**20
_SETTLED_TRIM_THRESHOLD = 2 * _SETTLED_MMAP_THRESHOLD

_applied = False
#: whether the fork hook is registered (once per process; os.register_at_fork has no undo)
_fork_hook = [False]


@functools.lru_cache(maxsize=None)
def _libc():
    """glibc (loaded once per process), or None where the C library is not glibc (macOS,
    Windows, musl)."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def _mallopt():
    """glibc's ``mallopt`` (``int mallopt(int, int)``), or None where there is no glibc."""
    libc = _libc()
    if libc is None:
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def _give_back_in_child():
    """In a process forked from one that keeps freed memory (a DataLoader worker): glibc's
    default limits again, so that the child returns large freed blocks to the OS. (glibc's
    adaptive mmap threshold stays off: blocks above 128 KiB are mapped and unmapped, the
    most frugal of its settings.)"""
    global _applied
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    _applied = False


def keep_freed_memory():
    """Make glibc keep and reuse freed memory in this process (see the module docstring).
    For CPU processes (``tools/test.py`` / ``tools/train.py --keep-freed-memory``); nothing
    calls it by default.

    Returns True if the setting is on (now or from an earlier call), False where the C
    library is not glibc (macOS, Windows, musl), where nothing is changed.
    """
    global _applied
    if _applied:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; both must hold, or the heap would still be trimmed/mapped
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
    if _applied and not _fork_hook[0]:
        os.register_at_fork(after_in_child=_give_back_in_child)
        _fork_hook[0] = True
    return _applied


def fix_mmap_threshold():
    """Fix glibc's mmap threshold at its 128 KiB default (no longer raised after large frees)
    and hand the free heap back to the OS (``malloc_trim``): from here on the process's RSS
    counts live memory, not freed blocks glibc keeps. For peak-memory readings only (see the
    module docstring). Returns False where the C library is not glibc (nothing changed)."""
    mallopt = _mallopt()
    if mallopt is None or not mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP_THRESHOLD):
        return False
    libc = _libc()
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    libc.malloc_trim(0)
    return True


def settle_mmap_threshold():
    """Set glibc's mmap and trim thresholds to the values its dynamic rule reaches in a process
    that frees tensors of 32 MiB or more (32 / 64 MiB): after :func:`fix_mmap_threshold`, the
    closest a process can come back to the default behaviour (``mallopt`` cannot switch the
    dynamic rule back on). Returns False where the C library is not glibc."""
    mallopt = _mallopt()
    return (mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD))
            and bool(mallopt(_M_TRIM_THRESHOLD, _SETTLED_TRIM_THRESHOLD)))


__all__ = ['fix_mmap_threshold', 'keep_freed_memory', 'settle_mmap_threshold']
