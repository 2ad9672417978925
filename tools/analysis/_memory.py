"""Peak-memory measurement shared by the benchmark scripts (one measurement per process)."""
import os
import resource

#: environment for a measuring child process: glibc raises its mmap threshold after large
#: frees and then keeps freed memory in the heap, so peak RSS would count dead tensors; a
#: fixed threshold returns them to the OS at once.
CHILD_ENV = dict(MALLOC_MMAP_THRESHOLD_='131072')


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
