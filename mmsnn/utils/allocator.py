"""Let a CPU inference process reuse the memory it frees instead of handing it back to the OS.

glibc's ``malloc`` serves every request above its mmap threshold (which it raises after large
frees, but never above 32 MiB) with fresh pages from ``mmap`` and returns them with ``munmap``
on free. PyTorch's CPU allocator takes its tensors from ``malloc``, so at COCO size, where one
spiking feature map is 30-160 MB, every layer of every forward pass maps new pages that the
kernel must fault in and zero before the first write -- work that shows up in the profile as
slow convolutions and element-wise ops. In the s-size SRB backbone at 800x1216 (eval, no grad,
2 threads) this is about 30% of the time (``tools/analysis/benchmark_backbone.py --fast-path``
measures it: the ``fused`` and ``fast`` rows differ only in this setting).

:func:`keep_freed_memory` switches glibc to serving all requests from its heap
(``M_MMAP_MAX = 0``) and to never trimming the heap (``M_TRIM_THRESHOLD``): after the first
forward pass the process reuses its own, already mapped pages. The numbers computed do not
change. The cost is memory: the process keeps its peak heap until it exits (the benchmarks
print the peak RSS with and without). It is a process-wide setting, so it belongs to inference
processes (``tools/test.py --fuse-conv-bn`` and ``fuse_for_inference``), not to training.
The environment variables ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<bytes>`` have the same
effect for any process.
"""
import ctypes
import ctypes.util
import sys

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: larger than any heap this process will have: never give memory back (a C int, in bytes)
_NEVER_TRIM = 2**31 - 1

_applied = False


def keep_freed_memory():
    """Make glibc keep and reuse freed memory in this process (see the module docstring).

    Returns True if the setting is on (now or from an earlier call), False where the C
    library is not glibc (macOS, Windows, musl), where nothing is changed.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; both must hold, or the heap would still be trimmed/mapped
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
    return _applied


__all__ = ['keep_freed_memory']
