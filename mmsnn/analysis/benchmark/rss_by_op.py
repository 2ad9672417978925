"""Peak resident memory of every op, read from the kernel (Linux).

:class:`~.tensor_bytes.PeakTensorBytes` counts tensor storages, which is the same on every
CPU, but it cannot see memory a kernel allocates for itself while it runs: oneDNN copies a
plain (NCHW) tensor into its blocked layout before it convolves, and in a conv's backward pass
both the input and the output gradient, each as large as the tensor. Those copies set the peak
RSS of the checkpointed T = 4 Mask R-CNN step at COCO size (two 262 MiB copies at P2), where
the tensor count saw nothing. This mode resets the kernel's peak-RSS mark (``VmHWM``) before
each op and reads it after, so every op gets the highest RSS reached while it ran, beside the
RSS before and after it. Run it with glibc's mmap threshold fixed
(:func:`mmsnn.deploy.allocator.fix_mmap_threshold`) so that the RSS follows the live
memory. The numbers depend on the CPU's kernels: for finding a peak, not for tests.
"""
from torch.utils._python_dispatch import TorchDispatchMode

from .processes import peak_rss_mark_mib, reset_peak_rss_mark, rss_mib


def peak_rss_per_op_available():
    """Whether this kernel lets a process reset and read its peak-RSS mark."""
    try:
        reset_peak_rss_mark()
        peak_rss_mark_mib()
    except OSError:
        return False
    return True


class PeakRSSByOp(TorchDispatchMode):
    """Context manager: ``rows`` gets one row per aten op run under it: dict(index, op,
    shapes (of its first three tensor arguments), before, peak, after), RSS in MiB. A row's
    ``scratch`` (:meth:`scratch`) is what the op held beyond both its inputs and its outputs.
    """

    def __init__(self):
        super().__init__()
        self.rows = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        before = rss_mib()
        reset_peak_rss_mark()
        out = func(*args, **(kwargs or {}))
        peak, after = peak_rss_mark_mib(), rss_mib()
        shapes = [tuple(a.shape) for a in args if hasattr(a, 'shape')][:3]
        self.rows.append(dict(index=len(self.rows), op=str(func), shapes=shapes,
                              before=before, peak=peak, after=after))
        return out

    @staticmethod
    def scratch(row):
        return row['peak'] - max(row['before'], row['after'])
