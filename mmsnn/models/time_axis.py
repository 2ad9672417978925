"""The time axis of spiking necks and heads, in one place.

Features arrive either as ``[B, C, H, W]`` (one step, or a backbone that already averaged
over time) or as ``[T, B, C, H, W]`` (``MetaSDT(keep_time=True)``). Necks and heads fold time
into the batch (time-major, ``[T*B, ...]``) so every conv / linear layer sees each step, and
merge the steps at the very end by averaging the logits over T.
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
