"""Scalar summaries of an ERF map: high-contribution area ratio, coverage, Gaussian width.

All functions take a 2-D map (``torch.Tensor`` or ``numpy.ndarray``, [H, W]) and return
Python floats, so the results go straight into ``metrics.json`` and logs.
"""
import math

import numpy as np

__all__ = ['area_ratio', 'erf_coverage', 'gaussian_width', 'erf_metrics',
           'DEFAULT_THRESHOLDS']

#: RepLKNet's thresholds for the high-contribution area ratio.
DEFAULT_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


def _to_numpy(erf_map):
    if hasattr(erf_map, 'detach'):  # torch tensor
        erf_map = erf_map.detach().cpu().double().numpy()
    m = np.asarray(erf_map, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f'expected a 2-D ERF map [H, W], got shape {m.shape}')
    return m


def _center(shape, center):
    H, W = shape
    if center is None:
        return H // 2, W // 2
    cy, cx = (int(c) for c in center)
    if not (0 <= cy < H and 0 <= cx < W):
        raise ValueError(f'center {center} lies outside the {H}x{W} map')
    return cy, cx


def _window_sums(m, cy, cx):
    """Sums and areas of the centred squares of side 2i+1, i = 0, 1, ..., clipped to the map,
    for every i until the square covers the whole map. Uses one integral image."""
    H, W = m.shape
    P = np.zeros((H + 1, W + 1), dtype=np.float64)
    P[1:, 1:] = m.cumsum(0).cumsum(1)
    n = max(cy, H - 1 - cy, cx, W - 1 - cx) + 1
    i = np.arange(n)
    r0, r1 = np.maximum(cy - i, 0), np.minimum(cy + i, H - 1) + 1
    c0, c1 = np.maximum(cx - i, 0), np.minimum(cx + i, W - 1) + 1
    sums = P[r1, c1] - P[r0, c1] - P[r1, c0] + P[r0, c0]
    areas = (r1 - r0) * (c1 - c0)
    return i, sums, areas


def area_ratio(erf_map, thresholds=DEFAULT_THRESHOLDS, center=None, return_sides=False):
    """RepLKNet's high-contribution area ratio of an ERF map.

    The map is scaled as ``log10(m + 1)`` and divided by its maximum. For each threshold t,
    the smallest centred square of side ``2i + 1`` (i = 0, 1, ...) whose sum is strictly
    larger than ``t`` times the total is found; the ratio is its area over ``H * W``
    (``side**2 / (H * W)`` while the square lies inside the map; once it reaches the border
    the clipped area is used, which only matters for non-square maps).

    Args:
        erf_map: [H, W] non-negative map (torch or numpy).
        thresholds: fractions of the total contribution.
        center: (row, col) of the squares' centre; default ``(H // 2, W // 2)``.
        return_sides: also return ``{t: side}``.

    Returns:
        ``{t: ratio}`` (and ``{t: side}``). An all-zero map gives ``nan`` ratios.
    """
    m = _to_numpy(erf_map)
    if (m < 0).any():
        raise ValueError('area_ratio expects a non-negative map (|grad| or relu(grad))')
    cy, cx = _center(m.shape, center)
    H, W = m.shape
    ratios, sides = {}, {}
    peak = m.max()
    if not np.isfinite(peak) or peak <= 0:
        ratios = {t: float('nan') for t in thresholds}
        sides = {t: float('nan') for t in thresholds}
        return (ratios, sides) if return_sides else ratios
    m = np.log10(m + 1.0)
    m = m / m.max()
    i, sums, areas = _window_sums(m, cy, cx)
    total = m.sum()
    for t in thresholds:
        hit = np.nonzero(sums > t * total)[0]
        if hit.size == 0:  # t >= 1: no square holds strictly more than everything
            ratios[t], sides[t] = float('nan'), float('nan')
            continue
        k = hit[0]
        ratios[t] = float(areas[k]) / float(H * W)
        sides[t] = int(2 * i[k] + 1)
    return (ratios, sides) if return_sides else ratios


def erf_coverage(erf_map, eps=0.0):
    """Fraction of input pixels whose contribution is larger than ``eps`` (default: non-zero)."""
    m = _to_numpy(erf_map)
    return float((np.abs(m) > eps).mean())


def _gaussian(x, a, mu, s):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2)


def _fit_gaussian_1d(y):
    """Least-squares fit of ``a * exp(-(x - mu)^2 / (2 s^2))`` to a 1-D profile with
    ``scipy.optimize.curve_fit``, started from the moment estimates. Returns (a, mu, s); nan
    when the profile carries no mass or the fit does not converge."""
    from scipy.optimize import curve_fit  # on first use: scipy.optimize takes ~0.3 s to load
    y = np.asarray(y, dtype=np.float64)
    x = np.arange(y.size, dtype=np.float64)
    w = np.clip(y, 0, None)
    nan = (float('nan'),) * 3
    if w.sum() <= 0 or not np.isfinite(w.sum()):
        return nan
    mu = (w * x).sum() / w.sum()
    var = (w * (x - mu) ** 2).sum() / w.sum()
    p0 = (float(y.max()), mu, math.sqrt(max(var, 0.25)))
    try:
        (a, mu, s), _ = curve_fit(_gaussian, x, y, p0=p0, maxfev=2000)
    except (RuntimeError, ValueError):  # no convergence / non-finite values
        return nan
    return float(a), float(mu), float(abs(s))  # the model is even in s


def gaussian_width(erf_map, center=None):
    """Width (sigma, in input pixels) of a Gaussian fitted to the centre row and column.

    Returns ``dict(sigma_x=..., sigma_y=..., sigma=...)``: ``sigma_x`` from the centre row
    (horizontal extent), ``sigma_y`` from the centre column, ``sigma`` their geometric mean.
    ``center`` defaults to ``(H // 2, W // 2)``. A profile without mass gives ``nan``.
    """
    m = _to_numpy(erf_map)
    cy, cx = _center(m.shape, center)
    _, _, sx = _fit_gaussian_1d(m[cy, :])
    _, _, sy = _fit_gaussian_1d(m[:, cx])
    sigma = math.sqrt(sx * sy) if (sx > 0 and sy > 0) else float('nan')
    return dict(sigma_x=sx, sigma_y=sy, sigma=sigma)


def erf_metrics(erf_map, thresholds=DEFAULT_THRESHOLDS, center=None):
    """All scalar metrics of one map in one flat dict (for logs and ``metrics.json``):
    ``area@t`` for each threshold, ``coverage``, ``sigma_x``, ``sigma_y``, ``sigma``."""
    out = {f'area@{t:g}': r for t, r in area_ratio(erf_map, thresholds, center).items()}
    out['coverage'] = erf_coverage(erf_map)
    out.update(gaussian_width(erf_map, center))
    return out
