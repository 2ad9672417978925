"""The I-LIF neuron's steps as a kernel: forward over ``[T, ...]`` in preallocated buffers, and an
autograd function that saves only a 1-byte surrogate window per step.

:class:`~mmsnn.models.neurons.IntegerLIF` runs :func:`ilif_steps` in no-grad mode and
:class:`LeanILIF` in training; the numbers are those of spikingjelly's ``ILIFNode`` followed by
``/ norm`` (``tests/test_models/test_multistep_training.py`` compares them).
"""
import torch


def ilif_steps(x_seq, decay, threshold, count, norm, window=None, lower=0.0, upper=None):
    """The I-LIF forward of :class:`LeanILIF` over ``[T, ...]`` (spikes divided by ``norm``);
    with ``window`` (a bool buffer like ``x_seq``) it also records the surrogate window
    ``lower <= h / th <= upper`` per step, which only training needs."""
    upper = count if upper is None else upper
    steps = x_seq.shape[0]
    unit = threshold == 1.0
    clamp_window = unit and lower == 0.0 and upper == count
    out = torch.empty_like(x_seq)
    above = None if window is None or clamp_window else torch.empty_like(window[0])
    v = None  # the membrane after reset, one step's buffer
    for t in range(steps):
        if v is None:
            h = x_seq[0]  # decay * 0 + x_0 == x_0
        else:
            h = v.mul_(decay).add_(x_seq[t])  # decay * v + x_t, in v's buffer
        scaled = h if unit else h / threshold
        c = out[t]
        torch.clamp(scaled, 0.0, count, out=c)
        if window is not None:
            if clamp_window:
                torch.eq(c, scaled, out=window[t])
            else:
                torch.ge(scaled, lower, out=window[t])
                window[t] &= torch.le(scaled, upper, out=above)
        c.round_()
        if t < steps - 1:  # the membrane after reset (not needed after the last step)
            reset = c if unit else c * threshold
            v = torch.sub(h, reset) if v is None else v.sub_(reset)
        if norm != 1.0:
            c.div_(norm)
    return out


class LeanILIF(torch.autograd.Function):
    """I-LIF over ``[T, ...]`` from a zero membrane, as spikingjelly's ``ilif_multi_step``,
    divided by ``norm``: ``h = decay * v + x_t``, ``c = round(clamp(h / th, 0, D))``,
    ``v = h - c * th``, output ``c / norm``; backward with the rectangular window
    ``lower <= h / th <= upper`` (straight-through, ``1 / th``), through the soft reset unless
    ``detach_reset``. Saves only the window, as bool.

    The numbers are those of spikingjelly's node followed by ``/ norm`` (the same float
    operations in the same order); what differs is the work: the membrane, the window and the
    spikes are written into preallocated buffers, and where the division by ``th`` is exact
    (``th = 1``) and the window is the clamp range (``[0, D]``, the default) the window is one
    comparison of the clamped value with the unclamped one (``0 <= u <= D`` exactly when
    ``clamp(u, 0, D) == u``), and the backward through one step is a single select:
    ``g = where(window, grad_t, carry)``, since ``grad_t * 1 + carry * 0 == grad_t`` and
    ``grad_t * 0 + carry * 1 == carry``. At T = 4 these passes over the activations are a
    good part of the step's non-conv time (``tools/analysis/benchmark.py --variants snn-T1
    snn-T4``)."""

    @staticmethod
    def forward(ctx, x_seq, decay, threshold, count, lower, upper, detach_reset, norm=1.0):
        window = torch.empty(x_seq.shape, dtype=torch.bool, device=x_seq.device)
        out = ilif_steps(x_seq, decay, threshold, count, norm, window, lower, upper)
        ctx.save_for_backward(window)
        ctx.decay, ctx.threshold, ctx.detach_reset, ctx.norm = decay, threshold, detach_reset, norm
        return out

    @staticmethod
    def backward(ctx, grad):
        (window,) = ctx.saved_tensors
        th, decay, norm = ctx.threshold, ctx.decay, ctx.norm
        # d loss / d counts; then, step by step from the last, d loss / d input in place
        grad_x = torch.div(grad, norm) if norm != 1.0 else grad.clone()
        carry = None  # d loss / d v after step t
        for t in range(grad.shape[0] - 1, -1, -1):
            g = grad_x[t]
            if th != 1.0:  # the general formula
                sg = window[t].to(grad.dtype) / th
                g.mul_(sg)
                if carry is not None:
                    g.add_(carry if ctx.detach_reset else carry * (1 - th * sg))
            elif carry is None:
                g.mul_(window[t])
            elif ctx.detach_reset:
                g.mul_(window[t]).add_(carry)
            else:
                torch.where(window[t], g, carry, out=g)
            if t:
                carry = torch.mul(g, decay, out=carry) if carry is not None else g * decay
        return grad_x, None, None, None, None, None, None, None


__all__ = ['LeanILIF', 'ilif_steps']
