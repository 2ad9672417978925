"""The time axis of spiking necks and heads, in one place.

Features arrive either as ``[B, C, H, W]`` (one step, or a backbone that already averaged
over time) or as ``[T, B, C, H, W]`` (``MetaSDT(keep_time=True)``). Necks and heads fold time
into the batch (time-major, ``[T*B, ...]``) so every conv / linear layer sees each step, and
merge the steps at the very end by averaging the logits over T.

Stateful neurons (I-LIF, LIF) in a neck or head must run as many steps as the folded input
has; the module that folds knows that number and hands it on with :func:`set_neuron_steps`, so a
head built with ``neuron_cfg=dict(type='IntegerLIF')`` (no ``T``) never takes a ``[T*B]`` batch for
one step of ``T*B`` samples.
"""


def fold(x):
    """``[T, B, ...]`` -> (``[T*B, ...]``, T); a 4-D (or lower) tensor -> (x, None)."""
    if x.dim() == 5:
        return x.flatten(0, 1), x.shape[0]
    return x, None


def fold_time(feats):
    """Tuple of [T,B,...] or [B,...] tensors -> (tuple of [T*B,...], T or None)."""
    T = fold(feats[0])[1]
    return tuple(fold(f)[0] for f in feats), T


def unfold_time(feats, T):
    """Inverse of :func:`fold_time` for a tuple of ``[T*B, ...]`` tensors."""
    if T is None:
        return tuple(feats)
    return tuple(f.reshape(T, f.shape[0] // T, *f.shape[1:]) for f in feats)


def mean_over_time(x, T):
    """Average a time-major folded tensor ``[T*N, ...]`` over its T steps -> ``[N, ...]``."""
    if T is None or x is None:
        return x
    return x.reshape(T, x.shape[0] // T, *x.shape[1:]).mean(0)


def set_neuron_steps(module, T):
    """Make every stateful neuron below ``module`` run ``T`` steps (1 for ``T=None``, a 4-D
    input): the T of the input that was just folded. Stateless neurons do not care."""
    steps = 1 if T is None else int(T)
    for m in module.modules():
        if getattr(m, 'stateful', False) and hasattr(m, 'T'):
            m.T = steps


def follow_time(module, T):
    """Deprecated name of :func:`set_neuron_steps` (kept for one release)."""
    from ..utils.deprecation import warn_moved
    warn_moved('mmsnn.models.time_axis.follow_time', 'mmsnn.models.time_axis.set_neuron_steps')
    return set_neuron_steps(module, T)
