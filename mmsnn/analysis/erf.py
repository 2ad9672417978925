"""Effective receptive fields (ERF) of spiking backbones: spatial, spatio-temporal, temporal.

Recipes (reference doc section 5; Luo et al. 2016, RepLKNet, the ST-ERF paper):

* spatial ERF: put a one-hot gradient at one position of an output (default its centre
  ``(h // 2, w // 2)``), summed over channels, back-propagate it to the input image and keep
  ``|grad|`` (``grad='abs'``, the paper) or ``relu(grad)`` (``grad='relu'``, RepLKNet),
  reduced over RGB (``reduce='mean'`` paper, ``'sum'`` RepLKNet), averaged over the inputs.
* ST-ERF: for a multi-step model fed ``[T, B, 3, H, W]`` (independent noise per step),
  ``ERF_tau(i, j) = E |d y_centre[t] / d x_(i,j)[t - tau]|`` with ``t = T - 1``.
* temporal ERF: ``E(tau) = sum_(i,j) |d y[T-1] / d x_(i,j)[T-1-tau]|``, mean and std over
  the inputs (each input is one run).

Everything is computed from ONE forward pass. The B samples of a batch are independent in
eval mode (BatchNorm uses its running statistics, the neurons are per-sample), so one
backward of the one-hot objective summed over the batch gives every sample's own input
gradient; each further target (another tap, layer or output time step) costs one more
backward on the retained graph, never another forward. ``batched_grads=True`` asks autograd
for all targets in one vmapped backward (``is_grads_batched``) and falls back to the loop
when an operator does not support it.

The model is put in eval mode under ``torch.enable_grad()``, spikingjelly neuron states are
reset before and after, and every module's train/eval flag is restored afterwards.
"""
import contextlib
import inspect
import warnings

import torch

from ..models.neurons import reset_neurons

__all__ = ['ERFResult', 'compute_erf', 'spatial_erf', 'layer_erf', 'st_erf', 'temporal_erf',
           'erf_mode', 'make_noise_inputs', 'naive_erf', 'backbone_tap_targets',
           'is_multi_step', 'analyze_backbone', 'merge_results']

_GRADS = ('abs', 'relu')
_REDUCES = ('mean', 'sum')


class _StopForward(Exception):
    """Raised by a forward hook once every requested layer has produced its output."""


@contextlib.contextmanager
def erf_mode(model):
    """Eval mode + grad enabled + reset neurons; restores every module's flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    reset_neurons(model)
    try:
        with torch.enable_grad():
            yield model
    finally:
        reset_neurons(model)
        for m, flag in flags:
            m.training = flag


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


def _accepts_keep_time(model):
    try:
        return 'keep_time' in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _time_major(y, B, what):
    """Output of a tap/layer as ``[T_out, B, C, h, w]``."""
    if isinstance(y, (tuple, list)):
        raise TypeError(f'{what} returned a {type(y).__name__}; name a module (or index) '
                        'whose output is one tensor')
    if not torch.is_tensor(y):
        raise TypeError(f'{what} returned {type(y).__name__}, not a tensor')
    if y.dim() == 3:  # [T*B, C, N] token maps: treat N as a 1-pixel-high map
        y = y.unsqueeze(-2)
    if y.dim() == 4:
        if y.shape[0] % B:
            raise ValueError(f'{what}: leading dim {y.shape[0]} is not a multiple of the '
                             f'batch size {B}')
        return y.reshape(y.shape[0] // B, B, *y.shape[1:])
    if y.dim() == 5 and y.shape[1] == B:
        return y
    raise ValueError(f'{what}: cannot read an output of shape {tuple(y.shape)} as '
                     '[B, C, h, w], [T*B, C, h, w] or [T, B, C, h, w]')


def _select(outputs, index, B):
    if torch.is_tensor(outputs):
        outputs = (outputs,)
    if not isinstance(outputs, (tuple, list)):
        raise TypeError(f'the model returned {type(outputs).__name__}; spatial_erf needs a '
                        'tensor or a tuple of tensors (backbone taps)')
    n = len(outputs)
    if not -n <= index < n:
        raise IndexError(f'output_index {index} is out of range: the model returns {n} '
                         'outputs (its out_indices)')
    return _time_major(outputs[index], B, f'output {index}')


def _resolve_steps(spec, T_out):
    if spec in ('last', None):
        return [T_out - 1]
    if spec == 'all':
        return list(range(T_out))
    steps = [int(s) for s in ([spec] if isinstance(spec, int) else spec)]
    for s in steps:
        if not -T_out <= s < T_out:
            raise IndexError(f'output time step {s} out of range for T={T_out}')
    return [s % T_out for s in steps]


def _position(pos, h, w, name):
    if pos is None:
        return h // 2, w // 2
    if isinstance(pos, dict):
        return _position(pos.get(name), h, w, name)
    ph, pw = (int(p) for p in pos)
    if not (-h <= ph < h and -w <= pw < w):
        raise IndexError(f'position {pos} lies outside the {h}x{w} output of {name}')
    return ph % h, pw % w


class ERFResult:
    """What :func:`compute_erf` measured.

    Attributes:
        maps (dict[str, Tensor]): per target, ``[S, T_in, H, W]`` maps averaged over the
            batch, for the output time steps ``out_steps`` (S of them) and every input step
            (``T_in = 1`` for a 4-D input). ``maps[k][s, j]`` is the ERF of output step
            ``out_steps[s]`` w.r.t. input step ``j``.
        sums (dict[str, Tensor]): per target ``[S, T_in, B]``: each sample's map summed over
            space (the temporal-ERF contributions of each run).
        out_steps (list[int]), in_steps (int), T_out (dict[str, int]), positions
        (dict[str, (row, col)]), out_shapes (dict[str, (h, w)]).
    """

    def __init__(self):
        self.maps, self.sums, self.T_out, self.positions, self.out_shapes = {}, {}, {}, {}, {}
        self.out_steps = {}
        self.in_steps = 1
        self.num_inputs = 0

    def spatial(self, name, step=-1):
        """Spatial ERF of output step ``step`` w.r.t. the input of the same step
        (the diagonal; for a 4-D input, w.r.t. the one image)."""
        steps = self.out_steps[name]
        t = steps[step] if step < 0 else step
        if t not in steps:
            raise KeyError(f'output step {t} of {name} was not computed (have {steps})')
        s = steps.index(t)
        j = t if self.in_steps > 1 else 0
        return self.maps[name][s, j]

    def delays(self, name):
        """ST-ERF of the last output step: ``[T, H, W]`` indexed by delay tau = 0..T-1."""
        T = self.T_out[name]
        if T - 1 not in self.out_steps[name]:
            raise KeyError(f'the last output step of {name} was not computed')
        if self.in_steps != T:
            raise ValueError(f'ST-ERF needs one input frame per step ({T}); got '
                             f'{self.in_steps} input steps')
        row = self.maps[name][self.out_steps[name].index(T - 1)]
        return row.flip(0)  # input step T-1-tau -> delay tau

    def temporal(self, name):
        """Temporal ERF ``(mean[T], std[T])`` over the runs, indexed by delay tau."""
        T = self.T_out[name]
        row = self.sums[name][self.out_steps[name].index(T - 1)].flip(0)  # [T, B]
        std = row.std(1, unbiased=True) if row.shape[1] > 1 else torch.zeros_like(row[:, 0])
        return row.mean(1), std


def _reduce_grad(g, grad, reduce):
    # g: [T_in, B, C, H, W]
    g = g.abs() if grad == 'abs' else g.clamp_min(0)
    return g.mean(2) if reduce == 'mean' else g.sum(2)


def compute_erf(model, inputs, targets, out_steps='last', position=None, grad='abs',
                reduce='mean', batched_grads=False):
    """ERF maps of several targets from one forward pass.

    Args:
        model (nn.Module): returns a tensor or a tuple of tensors (backbone taps).
        inputs (Tensor): ``[B, 3, H, W]``, or ``[T, B, 3, H, W]`` with one frame per step
            (the model is then called with ``keep_time=True`` when its ``forward`` takes it).
        targets (dict[str, int | str] | list): name -> output index (int, indexes the
            model's returned tuple) or module name (str, e.g. ``'block3.0'``; its output is
            caught with a forward hook). A list uses each entry as its own name.
        out_steps ('last' | 'all' | int | list[int]): output time steps to probe.
        position (tuple | dict | None): output position (row, col), one for all targets or
            a dict per target name; default the centre ``(h // 2, w // 2)`` of each output.
        grad ('abs' | 'relu'), reduce ('mean' | 'sum'): see the module docstring.
        batched_grads (bool): one vmapped backward for all targets (falls back to a loop).

    Returns:
        :class:`ERFResult`.
    """
    if grad not in _GRADS:
        raise ValueError(f'grad must be one of {_GRADS}, got {grad!r}')
    if reduce not in _REDUCES:
        raise ValueError(f'reduce must be one of {_REDUCES}, got {reduce!r}')
    if not torch.is_tensor(inputs) or inputs.dim() not in (4, 5):
        raise ValueError('inputs must be a [B, C, H, W] or [T, B, C, H, W] tensor')
    if not isinstance(targets, dict):
        targets = {str(t): t for t in targets}
    if not targets:
        raise ValueError('no ERF targets given')
    five_d = inputs.dim() == 5
    B = inputs.shape[1] if five_d else inputs.shape[0]
    layer_names = {v for v in targets.values() if isinstance(v, str)}
    need_outputs = any(not isinstance(v, str) for v in targets.values())
    modules = dict(model.named_modules())
    missing = sorted(n for n in layer_names if n not in modules)
    if missing:
        raise KeyError(f'no module named {missing} in {type(model).__name__}; names look like '
                       f'{[n for n in list(modules)[1:6]]}')

    result = ERFResult()
    result.in_steps = inputs.shape[0] if five_d else 1
    result.num_inputs = B
    with erf_mode(model):
        x = inputs.detach().clone().requires_grad_(True)
        caught, handles = {}, []

        def make_hook(name):
            def hook(module, args, output):
                if name not in caught:  # first call (a module reused later keeps its first)
                    caught[name] = output
                if not need_outputs and len(caught) == len(layer_names):
                    raise _StopForward
            return hook

        for name in layer_names:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        outputs = None
        try:
            if five_d and _accepts_keep_time(model):
                outputs = model(x, keep_time=True)
            else:
                outputs = model(x)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        not_run = sorted(layer_names - set(caught))
        if not_run:
            raise RuntimeError(f'module(s) {not_run} did not run in the forward pass (does '
                               'the model stop before them, e.g. a smaller out_indices?)')

        # one-hot objectives, one per (target, output step)
        objectives, index = [], []
        for name, spec in targets.items():
            what = f'module {spec!r}' if isinstance(spec, str) else f'output {spec}'
            y = (_time_major(caught[spec], B, what) if isinstance(spec, str)
                 else _select(outputs, spec, B))
            T_out, h, w = y.shape[0], y.shape[-2], y.shape[-1]
            ph, pw = _position(position, h, w, name)
            steps = _resolve_steps(out_steps, T_out)
            result.T_out[name], result.positions[name] = T_out, (ph, pw)
            result.out_shapes[name], result.out_steps[name] = (h, w), steps
            for t in steps:
                objectives.append(y[t, :, :, ph, pw].sum())
                index.append((name, t))

        grads = None
        if batched_grads and len(objectives) > 1:
            try:
                eye = torch.eye(len(objectives), dtype=x.dtype, device=x.device)
                grads = torch.autograd.grad(torch.stack(objectives), x, grad_outputs=eye,
                                            retain_graph=True, is_grads_batched=True,
                                            allow_unused=True)[0]
            except Exception as e:  # noqa: BLE001 - operators without vmap support
                warnings.warn(f'batched ERF gradients unavailable ({type(e).__name__}); '
                              'falling back to one backward per target')
                grads = None
        per_target = {}
        for k, ((name, t), obj) in enumerate(zip(index, objectives)):
            if grads is not None:
                g = grads[k]
            else:
                g = torch.autograd.grad(obj, x, retain_graph=k < len(objectives) - 1,
                                        allow_unused=True)[0]
                if g is None:
                    g = torch.zeros_like(x)
            g = g.detach()
            if not five_d:
                g = g.unsqueeze(0)
            m = _reduce_grad(g, grad, reduce)  # [T_in, B, H, W]
            per_target.setdefault(name, []).append((m.mean(1), m.sum((-2, -1))))
        del objectives, outputs, caught, grads
    for name, rows in per_target.items():
        result.maps[name] = torch.stack([r[0] for r in rows])
        result.sums[name] = torch.stack([r[1] for r in rows])
    return result


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
    steps = 'all' if time_step == 'all' else ('last' if time_step is None else [time_step])
    res = compute_erf(model, inputs, {'out': int(output_index)}, out_steps=steps,
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
    steps = 'all' if time_step == 'all' else ('last' if time_step is None else [time_step])
    res = compute_erf(model, inputs, targets, out_steps=steps, position=position, grad=grad,
                      reduce=reduce, batched_grads=batched_grads)
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
    (default: the last output). ``return_result`` also returns the :class:`ERFResult`.
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


def naive_erf(model, inputs, targets, out_steps='last', position=None, grad='abs',
              reduce='mean'):
    """Reference implementation for benchmarks and tests: one forward AND one backward per
    target, per output step and per sample. Same return layout as :func:`compute_erf`'s
    ``maps`` (``{name: [S, T_in, H, W]}``)."""
    five_d = inputs.dim() == 5
    B = inputs.shape[1] if five_d else inputs.shape[0]
    if not isinstance(targets, dict):
        targets = {str(t): t for t in targets}
    maps = {}
    for name, spec in targets.items():
        rows = []
        if out_steps in ('last', None):
            steps = ['last']
        elif out_steps == 'all':  # one probe to learn T_out
            probe = compute_erf(model, inputs[:, :1] if five_d else inputs[:1], {name: spec})
            steps = [[t] for t in range(probe.T_out[name])]
        else:
            steps = [[t] for t in ([out_steps] if isinstance(out_steps, int) else out_steps)]
        for t in steps:
            acc = 0
            for b in range(B):
                xb = inputs[:, b:b + 1] if five_d else inputs[b:b + 1]
                one = compute_erf(model, xb, {name: spec}, out_steps=t, position=position,
                                  grad=grad, reduce=reduce)
                acc = acc + one.maps[name][0]
            rows.append(acc / B)
        maps[name] = torch.stack(rows)
    return maps


#: last module of each MetaSDT stage tap (its output is the tap, before the mean over time)
_METASDT_STAGE_ENDS = ('ConvBlock1_1', 'ConvBlock1_2', 'ConvBlock2_2', 'block3', 'block4')


def backbone_tap_targets(backbone, taps=None):
    """ERF targets ``{'tap{k}': spec}`` for the stage taps ``taps`` of a backbone.

    A tap in the backbone's ``out_indices`` is read from its returned tuple; any other
    MetaSDT tap from the last module of its stage (forward hook), which only runs when the
    forward reaches it (MetaSDT stops after ``max(out_indices)``). ``taps=None``: the
    backbone's ``out_indices`` (or every returned output of a backbone without them).
    """
    out_indices = getattr(backbone, 'out_indices', None)
    if out_indices is None:
        if taps is None:
            raise ValueError(f'{type(backbone).__name__} has no out_indices; pass the output '
                             'indices to probe as taps')
        return {f'tap{k}': int(k) for k in taps}
    out_indices = [int(i) for i in out_indices]
    taps = out_indices if taps is None else [int(k) for k in taps]
    targets = {}
    for k in taps:
        if k in out_indices:
            targets[f'tap{k}'] = out_indices.index(k)
            continue
        stage = (_METASDT_STAGE_ENDS[k]
                 if 0 <= k < len(_METASDT_STAGE_ENDS) else None)
        blocks = getattr(backbone, stage, None) if stage else None
        if blocks is None or k > max(out_indices):
            raise ValueError(f'tap {k} is not available from {type(backbone).__name__} with '
                             f'out_indices={tuple(out_indices)}: choose taps among the '
                             f'out_indices or below their maximum')
        targets[f'tap{k}'] = f'{stage}.{len(blocks) - 1}'
    return targets


def is_multi_step(model):
    """Whether ``model`` runs real time steps (stateful neurons and ``T > 1``)."""
    return bool(getattr(model, 'stateful', False)) and int(getattr(model, 'T', 1)) > 1


def merge_results(results):
    """Combine :class:`ERFResult` s of disjoint input chunks (same targets and steps):
    maps are averaged with the chunk sizes as weights, per-sample sums concatenated."""
    results = list(results)
    if len(results) == 1:
        return results[0]
    total = sum(r.num_inputs for r in results)
    out = ERFResult()
    first = results[0]
    out.T_out, out.positions = dict(first.T_out), dict(first.positions)
    out.out_shapes, out.out_steps = dict(first.out_shapes), dict(first.out_steps)
    out.in_steps, out.num_inputs = first.in_steps, total
    for name in first.maps:
        out.maps[name] = sum(r.maps[name] * (r.num_inputs / total) for r in results)
        out.sums[name] = torch.cat([r.sums[name] for r in results], dim=-1)
    return out


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
    from .metrics import DEFAULT_THRESHOLDS, erf_metrics
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
