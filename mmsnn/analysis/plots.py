"""Figures of ERF maps (matplotlib).

* :func:`plot_erf_grid` -- a grid of heatmaps (rows: layers / models, columns: time steps /
  delays / taps) with one shared colour scale and one colour bar.
* :func:`plot_st_erf` -- the ST-ERF delay grid (columns tau = 0..T-1).
* :func:`plot_temporal_erf` -- temporal ERF curves, mean +- std band over runs.
* :func:`save_erf_report` -- ``.npy`` maps, the three PNGs and ``metrics.json`` of one
  :func:`~mmsnn.analysis.erf.analyze_backbone` summary.

Every ``plot_*`` function writes a PNG (``path``) and returns the path; the ``*_figure``
functions return the :class:`matplotlib.figure.Figure` instead, and :func:`figure_to_rgb` /
:func:`heatmap_rgb` give RGB arrays for visual backends (TensorBoard, ...).

Figures are drawn on :class:`~matplotlib.figure.Figure` objects with the Agg canvas, never
through ``pyplot``: no backend is selected, no global figure state is kept, and it works on
headless machines whatever backend the user's session has chosen.
"""
import json
import math
import os

import matplotlib
import numpy as np
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..utils.atomic import atomic_open, atomic_write

__all__ = ['plot_erf_grid', 'plot_st_erf', 'plot_temporal_erf', 'save_erf_report',
           'erf_grid_figure', 'st_erf_figure', 'temporal_erf_figure', 'report_figures',
           'figure_to_rgb', 'heatmap_rgb']

_NORMALIZE = ('global', 'row', 'col', 'map', 'none')


def _np(m):
    if m is None:
        return None
    if hasattr(m, 'detach'):
        m = m.detach().cpu().double().numpy()
    return np.asarray(m, dtype=np.float64)


def _group_max(grid, normalize):
    """The divisor of every cell: maps are divided by the max of their group so all cells
    share one colour scale (``none``: raw values, global range)."""
    R, C = len(grid), len(grid[0])
    peak = np.zeros((R, C))
    for r in range(R):
        for c in range(C):
            if grid[r][c] is not None:
                peak[r, c] = float(np.max(grid[r][c])) if grid[r][c].size else 0.
    if normalize == 'global':
        div = np.full((R, C), peak.max())
    elif normalize == 'row':
        div = np.repeat(peak.max(1, keepdims=True), C, 1)
    elif normalize == 'col':
        div = np.repeat(peak.max(0, keepdims=True), R, 0)
    elif normalize == 'map':
        div = peak
    else:
        div = np.ones((R, C))
    div[div <= 0] = 1.0
    return div


def plot_erf_grid(maps, path, dpi=150, **kwargs):
    """Write the heatmap grid of :func:`erf_grid_figure` (same arguments) to the PNG
    ``path`` (folders are created) and return ``path``."""
    _save(erf_grid_figure(maps, **kwargs), path, dpi)
    return path


def erf_grid_figure(maps, row_labels=None, col_labels=None, title=None, normalize='row',
                    scale='log', dynamic_range=1e4, cmap='inferno', cell_size=2.0,
                    annotate=None):
    """Heatmap grid with a shared colour scale.

    Args:
        maps: nested list ``[rows][cols]`` of [H, W] maps (torch/numpy; ``None`` leaves a
            cell empty), or ``{row_label: [maps...]}``.
        row_labels, col_labels (list[str]): axis labels.
        normalize ('global' | 'row' | 'col' | 'map' | 'none'): which maps share a maximum;
            each map is divided by its group's max so the single colour bar reads "fraction
            of the group's peak contribution". 'row' (default) compares the time steps /
            delays of one layer on one scale; 'global' everything.
        scale ('log' | 'linear'): 'log' shows ``dynamic_range`` decades below the peak
            (zeros get the lowest colour), which makes the extent of an ERF visible.
        annotate (nested list[str] | None): text written in the corner of each cell.
    """
    if isinstance(maps, dict):
        row_labels = list(maps) if row_labels is None else row_labels
        maps = [list(v) for v in maps.values()]
    grid = [[_np(m) for m in row] for row in maps]
    if not grid or not grid[0]:
        raise ValueError('plot_erf_grid needs at least one map')
    if normalize not in _NORMALIZE:
        raise ValueError(f'normalize must be one of {_NORMALIZE}, got {normalize!r}')
    C = max(len(row) for row in grid)
    grid = [row + [None] * (C - len(row)) for row in grid]
    R = len(grid)
    div = _group_max(grid, normalize)
    cells = [[None if grid[r][c] is None else grid[r][c] / div[r, c] for c in range(C)]
             for r in range(R)]
    vmax = max(float(np.max(m)) for row in cells for m in row if m is not None)
    vmax = vmax if vmax > 0 else 1.0
    if scale == 'log':
        norm = colors.LogNorm(vmin=vmax / dynamic_range, vmax=vmax, clip=True)
    elif scale == 'linear':
        norm = colors.Normalize(vmin=0.0, vmax=vmax)
    else:
        raise ValueError(f"scale must be 'log' or 'linear', got {scale!r}")
    cm = _colormap(cmap)

    H, W = next(m.shape for row in cells for m in row if m is not None)
    # fixed layout in inches (faster and steadier than constrained_layout)
    cw, ch = cell_size, cell_size * H / W
    gap, left, right = 0.08, (0.35 if row_labels is not None else 0.1), 1.0
    top = 0.08 + (0.25 if col_labels is not None else 0) + (0.25 if title else 0)
    bottom = 0.1
    fw = left + C * cw + (C - 1) * gap + right
    fh = top + R * ch + (R - 1) * gap + bottom
    fig = Figure(figsize=(fw, fh))

    def box(x0, y0, w, h):  # inches from the top-left corner -> figure fractions
        return [x0 / fw, 1 - (y0 + h) / fh, w / fw, h / fh]

    image = None
    for r in range(R):
        for c in range(C):
            ax = fig.add_axes(box(left + c * (cw + gap), top + r * (ch + gap), cw, ch))
            ax.set_xticks([])
            ax.set_yticks([])
            m = cells[r][c]
            if m is None:
                ax.axis('off')
                continue
            shown = np.ma.masked_less_equal(m, 0) if scale == 'log' else m
            image = ax.imshow(shown, cmap=cm, norm=norm, interpolation='nearest',
                              aspect='auto')
            if r == 0 and col_labels is not None:
                ax.set_title(str(col_labels[c]), fontsize=9, pad=3)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[r]), fontsize=9)
            if annotate is not None and annotate[r][c]:
                ax.text(0.02, 0.98, annotate[r][c], transform=ax.transAxes, fontsize=6,
                        va='top', ha='left', color='white',
                        bbox=dict(facecolor='black', alpha=0.4, pad=1, lw=0))
    if image is not None:
        label = {'global': 'ERF / global max', 'row': 'ERF / row max', 'col': 'ERF / column max',
                 'map': 'ERF / map max', 'none': 'ERF'}[normalize]
        grid_h = R * ch + (R - 1) * gap
        cax = fig.add_axes(box(left + C * (cw + gap) + 0.05, top + 0.1 * grid_h, 0.12,
                               0.8 * grid_h))
        fig.colorbar(image, cax=cax, label=label)
    if title:
        fig.text(0.5, 1 - 0.06 / fh, title, ha='center', va='top', fontsize=10)
    return fig


def plot_st_erf(delay_maps, path, dpi=150, **kwargs):
    """Write the delay grid of :func:`st_erf_figure` (same arguments) to the PNG ``path``."""
    _save(st_erf_figure(delay_maps, **kwargs), path, dpi)
    return path


def st_erf_figure(delay_maps, title='ST-ERF: output step T-1 vs input step T-1-tau',
                  normalize='row', **kwargs):
    """ST-ERF delay grid. ``delay_maps``: ``{row_label: [T, H, W]}`` indexed by delay."""
    rows = {k: list(_np(v)) for k, v in delay_maps.items()}
    T = max(len(v) for v in rows.values())
    cols = [f'\u03c4 = {t}' for t in range(T)]
    return erf_grid_figure(rows, col_labels=cols, title=title, normalize=normalize, **kwargs)


def plot_temporal_erf(curves, path, dpi=150, **kwargs):
    """Write the curves of :func:`temporal_erf_figure` (same arguments) to the PNG ``path``."""
    _save(temporal_erf_figure(curves, **kwargs), path, dpi)
    return path


def temporal_erf_figure(curves, title='Temporal ERF', logy=True):
    """Temporal ERF curves ``{label: (mean[T], std[T])}`` against the delay tau, each with
    a mean +- std band over the runs. ``logy``: logarithmic y axis (the contribution of
    older inputs usually decays by orders of magnitude); the band's lower edge is clipped
    at zero, and the axis starts at half the smallest positive value."""
    fig = Figure(figsize=(4.2, 3.0), layout='constrained')
    ax = fig.add_subplot()
    positives = []
    for label, (mean, std) in curves.items():
        mean, std = _np(mean).reshape(-1), _np(std).reshape(-1)
        tau = np.arange(mean.size)
        line, = ax.plot(tau, mean, marker='o', ms=3, label=str(label))
        lo, hi = mean - std, mean + std
        positives.extend(v for v in np.concatenate([mean, hi]) if v > 0)
        ax.fill_between(tau, np.clip(lo, 0, None), hi, color=line.get_color(), alpha=0.2,
                        lw=0)
    ax.set_xlabel('delay \u03c4 (input step T-1-\u03c4 \u2192 output step T-1)')
    ax.set_ylabel('\u03a3 |\u2202y / \u2202x|')
    if logy and positives:
        ax.set_yscale('log')
        ax.set_ylim(bottom=min(positives) * 0.5)
    n = max(len(_np(m).reshape(-1)) for m, _ in curves.values())
    ax.set_xticks(range(n))
    ax.grid(alpha=0.3)
    if len(curves) > 1 or next(iter(curves)) not in ('', None):
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return fig


def _colormap(name):
    base = matplotlib.colormaps[name]
    return base.with_extremes(bad=base(0.0), under=base(0.0))  # zeros: the lowest colour


def _save(fig, path, dpi):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    FigureCanvasAgg(fig)
    with atomic_open(path) as f:  # a killed run leaves the previous picture, not half of one
        fig.savefig(f, format=os.path.splitext(path)[1][1:] or 'png', dpi=dpi)


def figure_to_rgb(fig, dpi=100):
    """The figure rendered at ``dpi`` as a ``uint8`` ``[H, W, 3]`` RGB array."""
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def heatmap_rgb(erf_map, scale='log', dynamic_range=1e4, cmap='inferno'):
    """One ERF map ``[H, W]`` as a ``uint8`` ``[H, W, 3]`` RGB image, one pixel per input
    pixel, divided by its maximum and coloured like :func:`erf_grid_figure` (``scale='log'``:
    ``dynamic_range`` decades below the peak; zeros get the lowest colour)."""
    m = _np(erf_map)
    if m.ndim != 2:
        raise ValueError(f'expected a 2-D ERF map [H, W], got shape {m.shape}')
    peak = float(m.max()) if m.size else 0.0
    m = m / peak if peak > 0 else np.zeros_like(m)
    if scale == 'log':
        norm = colors.LogNorm(vmin=1.0 / dynamic_range, vmax=1.0, clip=True)
        shown = np.ma.masked_less_equal(m, 0)
    elif scale == 'linear':
        norm, shown = colors.Normalize(vmin=0.0, vmax=1.0, clip=True), m
    else:
        raise ValueError(f"scale must be 'log' or 'linear', got {scale!r}")
    rgba = _colormap(cmap)(norm(shown), bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if hasattr(v, 'tolist'):
        return _json_safe(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no nan/inf
    return v


def report_figures(summary, title=''):
    """The figures of one :func:`~mmsnn.analysis.erf.analyze_backbone` summary:
    ``{'erf': taps x time steps (or one row of taps), 'st_erf': taps x delays,
    'temporal_erf': curves}``; the last two only for multi-step backbones."""
    taps = summary['taps']
    size = 'x'.join(str(s) for s in summary['size'])
    head = f'{title} ' if title else ''
    figures = {}
    steps = max(len(e['spatial']) for e in taps.values())
    if steps > 1:  # rows: taps, columns: time steps
        grid = {name: list(_np(e['spatial'])) for name, e in taps.items()}
        figures['erf'] = erf_grid_figure(
            grid, col_labels=[f't = {t}' for t in range(steps)],
            title=f'{head}spatial ERF per time step (input {size}, '
                  f'N={summary["num_inputs"]})')
    else:  # one row, columns: taps
        figures['erf'] = erf_grid_figure(
            [[e['spatial'][-1] for e in taps.values()]], col_labels=list(taps),
            normalize='map',
            annotate=[[f"cov {e['metrics']['coverage']:.2f}\n"
                       f"A@0.5 {e['metrics'].get('area@0.5', float('nan')):.3f}"
                       for e in taps.values()]],
            title=f'{head}spatial ERF (input {size}, N={summary["num_inputs"]})')
    delays = {name: e['delays'] for name, e in taps.items() if e['delays'] is not None}
    if delays:
        figures['st_erf'] = st_erf_figure(delays, title=f'{head}ST-ERF by delay')
        figures['temporal_erf'] = temporal_erf_figure(
            {name: e['temporal'] for name, e in taps.items() if e['temporal'] is not None},
            title=f'{head}temporal ERF')
    return figures


def save_erf_report(summary, out_dir, title='', extra=None, pictures=True, figures=None,
                    dpi=150):
    """Write one :func:`~mmsnn.analysis.erf.analyze_backbone` summary to ``out_dir``:

    * ``erf_tap{k}.npy`` -- spatial ERF ``[S, H, W]`` (one map per output step);
    * ``st_erf_tap{k}.npy`` -- ST-ERF ``[T, H, W]`` by delay (multi-step backbones);
    * ``temporal_erf_tap{k}.npy`` -- ``[2, T]``: mean and std of the temporal ERF;
    * ``erf.png`` (taps x time steps), ``st_erf.png`` (taps x delays), ``temporal_erf.png``
      (when ``pictures``; ``figures``: the :func:`report_figures` already drawn);
    * ``metrics.json`` -- metrics per tap, the temporal curves and ``extra``.

    Returns ``{kind: path}`` of the files written.
    """
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    taps = summary['taps']
    for name, e in taps.items():
        files[f'erf_{name}'] = os.path.join(out_dir, f'erf_{name}.npy')
        _save_npy(files[f'erf_{name}'], _np(e['spatial']).astype(np.float32))
        if e['delays'] is not None:
            files[f'st_erf_{name}'] = os.path.join(out_dir, f'st_erf_{name}.npy')
            _save_npy(files[f'st_erf_{name}'], _np(e['delays']).astype(np.float32))
            files[f'temporal_erf_{name}'] = os.path.join(out_dir, f'temporal_erf_{name}.npy')
            _save_npy(files[f'temporal_erf_{name}'],
                      np.stack([_np(e['temporal'][0]), _np(e['temporal'][1])]))
    if pictures:
        figures = report_figures(summary, title) if figures is None else figures
        for kind, key in (('erf', 'erf_png'), ('st_erf', 'st_erf_png'),
                          ('temporal_erf', 'temporal_png')):
            if kind in figures:
                files[key] = os.path.join(out_dir, f'{kind}.png')
                _save(figures[kind], files[key], dpi)
    record = dict(extra or {})
    record.update(T=summary['T'], multi_step=summary['multi_step'],
                  num_inputs=summary['num_inputs'], size=list(summary['size']),
                  grad=summary.get('grad'), reduce=summary.get('reduce'), taps={})
    for name, e in taps.items():
        rec = dict(e['metrics'])
        rec['position'] = list(e['position'])
        rec['out_size'] = list(e['out_size'])
        if e['temporal'] is not None:
            rec['temporal_mean'] = _np(e['temporal'][0]).tolist()
            rec['temporal_std'] = _np(e['temporal'][1]).tolist()
        record['taps'][name] = rec
    files['metrics'] = os.path.join(out_dir, 'metrics.json')
    atomic_write(files['metrics'], json.dumps(_json_safe(record), indent=2))
    return files


def _save_npy(path, array):
    with atomic_open(path) as f:
        np.save(f, array)
