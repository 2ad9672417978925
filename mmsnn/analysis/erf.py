"""ERF recipes of spiking backbones: spatial ERF, ST-ERF and temporal ERF, and the summary
the hook and the CLI report. The gradients come from :mod:`mmsnn.analysis.erf_engine`.

Recipes (reference doc section 5; Luo et al. 2016, RepLKNet, the ST-ERF paper):

* spatial ERF: put a one-hot gradient at one position of an output (default its centre
  ``(h // 2, w // 2)``), summed over channels, back-propagate it to the input image and keep
  ``|grad|`` (``grad='abs'``, the paper) or ``relu(grad)`` (``grad='relu'``, RepLKNet),
  reduced over RGB (``reduce='mean'`` paper, ``'sum'`` RepLKNet), averaged over the inputs.
* ST-ERF: for a multi-step model fed ``[T, B, 3, H, W]`` (independent noise per step),
  ``ERF_tau(i, j) = E |d y_centre[t] / d x_(i,j)[t - tau]|`` with ``t = T - 1``.
* temporal ERF: ``E(tau) = sum_(i,j) |d y[T-1] / d x_(i,j)[T-1-tau]|``, mean and std over
  the inputs (each input is one run).

Everything is computed from ONE forward pass per batch of inputs, in eval mode with neuron
states reset; every module's train/eval flag is restored afterwards.

Stage taps outside a backbone's ``out_indices`` are read from the module that ends the stage,
which the backbone names through ``stage_module_names()`` (see
:meth:`mmsnn.models.MetaSDT.stage_module_names`); a backbone without that method offers its
``out_indices`` only.
"""
import torch

from .erf_engine import compute_erf, merge_results
from .metrics import DEFAULT_THRESHOLDS, erf_metrics

__all__ = ['spatial_erf', 'layer_erf', 'st_erf', 'temporal_erf', 'make_noise_inputs',
           'backbone_tap_targets', 'is_multi_step', 'analyze_backbone']


def make_noise_inputs(num_inputs=2, size=(128, 128), time_steps=None, channels=3,
                      generator=None, seed=None, dtype=torch.float32, device='cpu'):
    """N(0, 1) noise inputs: ``[N, C, H, W]``, or ``[T, N, C, H, W]`` (independent per step)
    when ``time_steps`` is given. Draws from ``generator`` (or a fresh one seeded with
    ``seed``) so the global RNG is never touched."""
    if generator is None:
        generator = torch.Generator(device='cpu')
        generator.manual_seed(0 if seed is None else int(seed))
    H, W = (size, size) if isinstance(size, int) else tuple(size)
    shape = (num_inputs, channels, H, W)
    if time_steps is not None:
        shape = (int(time_steps),) + shape
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    return x.to(dtype=dtype, device=device)


def _steps(time_step):
    return 'all' if time_step == 'all' else ('last' if time_step is None else [time_step])


def spatial_erf(model, inputs, output_index=0, position=None, grad='abs', reduce='mean',
                time_step=None):
    """Spatial ERF of output ``output_index`` of ``model`` (a backbone tap) at ``position``.

    Args:
        model: a backbone returning a tuple of taps (or one tensor).
        inputs: ``[B, 3, H, W]`` images/noise, or ``[T, B, 3, H, W]`` for a multi-step model.
        output_index (int): index into the model's returned tuple.
        position ((row, col) | None): output position; default ``(h // 2, w // 2)``.
        grad ('abs' | 'relu'), reduce ('mean' | 'sum'): map definition.
        time_step (int | 'all' | None): for a 5-D input, the output step t whose ERF w.r.t.
            the input frame of the same step x[t] is returned (default the last step);
            ``'all'`` returns ``[T, H, W]``, one map per step. Ignored for 4-D inputs.

    Returns:
        ``[H, W]`` tensor (``[T, H, W]`` for ``time_step='all'``), averaged over the batch.
    """
    res = compute_erf(model, inputs, {'out': int(output_index)}, out_steps=_steps(time_step),
                      position=position, grad=grad, reduce=reduce)
    if time_step == 'all':
        return torch.stack([res.spatial('out', t) for t in res.out_steps['out']])
    return res.spatial('out', res.out_steps['out'][0])


def layer_erf(model, inputs, layers, output_indices=(), position=None, grad='abs',
              reduce='mean', time_step=None, batched_grads=False):
    """Spatial ERFs of named modules (and optionally output indices) from one forward pass.

    Args:
        layers (list[str]): module names, e.g. ``['ConvBlock1_2.0', 'block3.0']``.
        output_indices (list[int]): model outputs to add, named ``'out{k}'``.
        time_step: as in :func:`spatial_erf` (``'all'`` gives ``[T, H, W]`` per layer).

    Returns:
        ``{name: [H, W] map}`` (or ``[T, H, W]`` with ``time_step='all'``).
    """
    targets = {name: name for name in layers}
    targets.update({f'out{k}': int(k) for k in output_indices})
    res = compute_erf(model, inputs, targets, out_steps=_steps(time_step), position=position,
                      grad=grad, reduce=reduce, batched_grads=batched_grads)
    out = {}
    for name in targets:
        if time_step == 'all':
            out[name] = torch.stack([res.spatial(name, t) for t in res.out_steps[name]])
        else:
            out[name] = res.spatial(name, res.out_steps[name][0])
    return out


def _noise_for(model, inputs, num_inputs, size, seed):
    if inputs is not None:
        if inputs.dim() != 5:
            raise ValueError('ST-ERF needs a [T, B, 3, H, W] input with a frame per step')
        return inputs
    T = int(getattr(model, 'T', 1))
    p = next(model.parameters(), None)
    kw = dict(dtype=p.dtype, device=p.device) if p is not None else {}
    return make_noise_inputs(num_inputs, size, time_steps=T, seed=seed, **kw)


def _targets(layers, output_indices):
    if not layers and not output_indices:
        output_indices = (-1,)
    targets = {name: name for name in (layers or ())}
    targets.update({f'out{k}': int(k) for k in (output_indices or ())})
    return targets


def st_erf(model, inputs=None, output_indices=(), layers=(), num_inputs=2, size=(64, 64),
           position=None, grad='abs', reduce='mean', seed=0, batched_grads=False,
           return_result=False):
    """ST-ERF delay maps of a multi-step model.

    ``inputs`` is ``[T, B, 3, H, W]`` (independent frames); by default N(0, 1) noise of
    ``num_inputs`` x ``size`` with ``T = model.T`` steps. Returns ``{name: [T, H, W]}``
    indexed by delay tau = 0..T-1 (``ERF_tau`` of output step T-1 w.r.t. input step
    T-1-tau), names ``'out{k}'`` for output indices and the module names for ``layers``
    (default: the last output). ``return_result`` also returns the
    :class:`~mmsnn.analysis.erf_engine.ERFResult`.
    """
    x = _noise_for(model, inputs, num_inputs, size, seed)
    res = compute_erf(model, x, _targets(layers, output_indices), out_steps='last',
                      position=position, grad=grad, reduce=reduce, batched_grads=batched_grads)
    out = {name: res.delays(name) for name in res.maps}
    return (out, res) if return_result else out


def temporal_erf(model, inputs=None, output_indices=(), layers=(), num_inputs=4,
                 size=(64, 64), position=None, grad='abs', reduce='mean', seed=0,
                 batched_grads=False):
    """Temporal ERF: ``{name: (mean[T], std[T])}`` of ``E(tau) = sum_(i,j) |d y[T-1] /
    d x_(i,j)[T-1-tau]|`` over the inputs (runs), indexed by delay tau."""
    x = _noise_for(model, inputs, num_inputs, size, seed)
    res = compute_erf(model, x, _targets(layers, output_indices), out_steps='last',
                      position=position, grad=grad, reduce=reduce, batched_grads=batched_grads)
    return {name: res.temporal(name) for name in res.maps}


def backbone_tap_targets(backbone, taps=None):
    """ERF targets ``{'tap{k}': spec}`` for the stage taps ``taps`` of a backbone.

    A tap in the backbone's ``out_indices`` is read from its returned tuple; any other tap
    from the last module of its stage, as ``backbone.stage_module_names()`` lists it (forward
    hook). Taps above ``max(out_indices)`` are refused: a backbone may stop its forward (or
    not build the stages) after the last tap it returns. ``taps=None``: the backbone's
    ``out_indices`` (or every returned output of a backbone without them).
    """
    out_indices = getattr(backbone, 'out_indices', None)
    if out_indices is None:
        if taps is None:
            raise ValueError(f'{type(backbone).__name__} has no out_indices; pass the output '
                             'indices to probe as taps')
        return {f'tap{k}': int(k) for k in taps}
    out_indices = [int(i) for i in out_indices]
    taps = out_indices if taps is None else [int(k) for k in taps]
    stage_names = getattr(backbone, 'stage_module_names', None)
    stages = stage_names() if callable(stage_names) else None
    targets = {}
    for k in taps:
        if k in out_indices:
            targets[f'tap{k}'] = out_indices.index(k)
            continue
        if stages is None:
            raise ValueError(f'tap {k} is not in the out_indices {tuple(out_indices)} of '
                             f'{type(backbone).__name__}, which does not name its stage '
                             'modules (no stage_module_names()): choose taps among the '
                             'out_indices')
        names = stages[k] if 0 <= k < len(stages) else ()
        if not names or k > max(out_indices):
            raise ValueError(f'tap {k} is not available from {type(backbone).__name__} with '
                             f'out_indices={tuple(out_indices)}: choose taps among the '
                             f'out_indices or below their maximum')
        targets[f'tap{k}'] = names[-1]
    return targets


def is_multi_step(model):
    """Whether ``model`` runs real time steps (stateful neurons and ``T > 1``)."""
    return bool(getattr(model, 'stateful', False)) and int(getattr(model, 'T', 1)) > 1


def analyze_backbone(backbone, inputs, taps=None, grad='abs', reduce='mean',
                     thresholds=None, batched_grads=False, batch_size=None, progress=None):
    """Everything the hook and the CLI report about one backbone.

    ``inputs``: ``[B, 3, H, W]`` for a single-step backbone; ``[T, B, 3, H, W]`` (one frame
    per step) for a multi-step one, which then also gets ST-ERF delay maps and the temporal
    ERF. One forward pass per chunk of ``batch_size`` inputs (default: all at once);
    ``progress()`` is called after each chunk.

    Returns ``{'multi_step', 'T', 'num_inputs', 'size', 'grad', 'reduce', 'taps':
    {'tap{k}': {'spatial': [S, H, W] (per output step, w.r.t. the same step's frame),
    'delays': [T, H, W] | None, 'temporal': (mean[T], std[T]) | None, 'position': (row,
    col), 'out_size': (h, w), 'metrics': {...}}}}``. Metrics are those of
    :func:`~mmsnn.analysis.metrics.erf_metrics` on the last step's spatial map, plus
    ``temporal_share`` (share of the last output's contribution that comes from earlier
    input steps) for multi-step backbones.
    """
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else tuple(thresholds)
    multi = inputs.dim() == 5
    targets = backbone_tap_targets(backbone, taps)
    B = inputs.shape[1] if multi else inputs.shape[0]
    step = B if not batch_size else int(batch_size)
    parts = []
    for b0 in range(0, B, step):
        chunk = inputs[:, b0:b0 + step] if multi else inputs[b0:b0 + step]
        parts.append(compute_erf(backbone, chunk, targets, out_steps='all' if multi else 'last',
                                 grad=grad, reduce=reduce, batched_grads=batched_grads))
        if progress is not None:
            progress()
    res = merge_results(parts)
    out = dict(multi_step=multi, T=res.in_steps, num_inputs=res.num_inputs,
               size=tuple(inputs.shape[-2:]), grad=grad, reduce=reduce, taps={})
    for name in targets:
        spatial = torch.stack([res.spatial(name, t) for t in res.out_steps[name]])
        entry = dict(spatial=spatial, delays=None, temporal=None,
                     position=res.positions[name], out_size=res.out_shapes[name])
        entry['metrics'] = erf_metrics(spatial[-1], thresholds)
        if multi and res.T_out[name] == res.in_steps:
            entry['delays'] = res.delays(name)
            entry['temporal'] = res.temporal(name)
            mean = entry['temporal'][0]
            total = float(mean.sum())
            entry['metrics']['temporal_share'] = (float(mean[1:].sum()) / total
                                                  if total > 0 else float('nan'))
        out['taps'][name] = entry
    return out
