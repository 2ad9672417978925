"""The torch-function mode of the counter: the time axis through every torch op, and the
bare ``@`` products no hooked module covers.

Not ``torch.utils.flop_counter.FlopCounterMode``: that is a dispatch mode, it sees aten ops
after autograd has decomposed them, where the Python tensors the counter tagged as spikes
(by ``id``, through views) are no longer the operands it is handed, and it neither follows
the time axis nor can attribute a product to the module running it by this report's layer
names. Its FLOP formulas are reused where they apply (:mod:`.flops`).
"""
import torch
from torch.overrides import TorchFunctionMode

_MATMULS = ('__matmul__', 'matmul', 'bmm')
#: ops that copy a tensor over new leading entries (direct encoding: the image at every step)
_REPEATS = ('expand', 'repeat')
#: reductions that remove the time axis when taken over it (``mean_over_time``)
_REDUCTIONS = ('mean', 'sum', 'amax', 'amin', 'max', 'min', 'prod')


def _reduces_dim0(args, kwargs):
    """Whether a reduction's ``dim`` takes in axis 0 (not an elementwise ``max(a, b)``)."""
    dim = args[1] if len(args) > 1 else kwargs.get('dim')
    if isinstance(dim, (tuple, list)):
        return 0 in dim
    return isinstance(dim, int) and dim == 0


class _TimeAndMatmulWatch(TorchFunctionMode):
    """Sees every torch op of a forward pass: passes the time axis of its inputs on to its
    output (:meth:`EnergyCounter.propagate_time`), and hands every ``@`` / ``torch.matmul`` /
    ``torch.bmm`` that no hooked module covers to :meth:`EnergyCounter.bare_matmul`."""

    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        counter = self.counter
        if not counter._in_image or counter._busy:
            return out
        name = getattr(func, '__name__', '')
        if (name in _MATMULS and len(args) >= 2 and isinstance(out, torch.Tensor)
                and all(isinstance(a, torch.Tensor) and a.dim() >= 2 for a in args[:2])):
            counter.bare_matmul(args[0], args[1], out)
        counter.propagate_time(name, args, kwargs, out)
        return out
