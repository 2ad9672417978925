"""Peak of live tensor bytes, counted at the dispatcher.

Unlike the peak RSS (which depends on the allocator and on the CPU's kernels' scratch
memory), the bytes of the tensor storages alive after each op are the same on every CPU for
the same ops: a measure tests can assert on.
"""
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakTensorBytes(TorchDispatchMode):
    """Context manager: ``peak`` is the largest number of bytes, over the ops run under it, of
    the tensor storages that are alive (made under it, not yet freed) after an op.

    Args:
        ignore (iterable of Tensor): tensors made before that ops may return again (a view or
            an in-place op's result); their storages are never counted.
    """

    def __init__(self, ignore=()):
        super().__init__()
        self.ignore = {t.untyped_storage().data_ptr() for t in ignore}
        self.alive, self.now, self.peak = {}, 0, 0

    def _forget_freed(self):
        for ptr in [p for p, (ref, _) in self.alive.items() if ref.expired()]:
            self.now -= self.alive.pop(ptr)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._forget_freed()  # also frees an address before a new storage reuses it
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr and ptr not in self.alive and ptr not in self.ignore:
                    self.alive[ptr] = (StorageWeakRef(storage), storage.nbytes())
                    self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        return out
