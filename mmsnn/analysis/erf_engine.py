"""The ERF gradient engine: input gradients of one-hot output objectives, many targets from
one forward pass. The recipes built on it (spatial ERF, ST-ERF, temporal ERF) are in
:mod:`mmsnn.analysis.erf`.

For each target (a model output or a named module) and output time step t, the objective is
``sum over channels of y[t, b, :, row, col]`` summed over the batch. The B samples of a batch
are independent in eval mode (BatchNorm uses its running statistics, the neurons are
per-sample), so one backward of that sum gives every sample's own input gradient; each further
target costs one more backward on the retained graph, never another forward.
``batched_grads=True`` asks autograd for all targets in one vmapped backward
(``is_grads_batched``) and falls back to the loop, with a warning, when an operator does not
support it (:attr:`ERFResult.batched_grads` says which path ran).

The gradient is reduced to a map per input step and sample: ``|grad|`` (``grad='abs'``, the
ST-ERF paper) or ``relu(grad)`` (``grad='relu'``, RepLKNet), then the mean (``'mean'``) or sum
(``'sum'``) over the input channels.
"""
import contextlib
import inspect
import warnings

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sj_functional

from ..utils.compile import eager_module

__all__ = ['ERFResult', 'compute_erf', 'erf_mode', 'merge_results']

_GRADS = ('abs', 'relu')
_REDUCES = ('mean', 'sum')


class _StopForward(Exception):
    """Raised by a forward hook once every requested layer has produced its output."""


def _batch_norm_as_affine(module, args, output):
    """Forward hook: an eval-mode BatchNorm's output recomputed as its per-channel affine map.

    Why: torch's BatchNorm backward is wrong (torch 2.13, CPU, train and eval) when the batch
    holds one sample and the incoming gradient is channels-last strided while the input is not,
    e.g. BN followed by ``flatten(2).transpose(-1, -2)``. ERF probes run at batch 1 on any
    model a user passes; the affine map's backward is plain elementwise arithmetic. The
    returned tensor replaces BN's output, so BN's own backward never runs.
    """
    x = args[0]
    scale = torch.rsqrt(module.running_var + module.eps)
    shift = -module.running_mean * scale
    if module.weight is not None:
        scale = scale * module.weight
        shift = shift * module.weight + module.bias
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x * scale.reshape(shape).to(x.dtype) + shift.reshape(shape).to(x.dtype)


@contextlib.contextmanager
def erf_mode(model):
    """Eval mode, grad enabled, spikingjelly states reset (``functional.reset_net``) and every
    BatchNorm with running statistics computed as its affine map (see
    :func:`_batch_norm_as_affine`); restores every module's train flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    sj_functional.reset_net(model)
    handles = [m.register_forward_hook(_batch_norm_as_affine) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and m.running_mean is not None and m.running_var is not None]
    try:
        with torch.enable_grad():
            yield model
    finally:
        for h in handles:
            h.remove()
        sj_functional.reset_net(model)
        for m, flag in flags:
            m.training = flag


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
        raise TypeError(f'the model returned {type(outputs).__name__}; an output index needs '
                        'a tensor or a tuple of tensors (backbone taps)')
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
        batched_grads (bool): the gradients came from one vmapped backward (False: one
            backward per target, also after a fallback).
        out_steps (list[int]), in_steps (int), T_out (dict[str, int]), positions
        (dict[str, (row, col)]), out_shapes (dict[str, (h, w)]).
    """

    def __init__(self):
        self.maps, self.sums, self.T_out, self.positions, self.out_shapes = {}, {}, {}, {}, {}
        self.out_steps = {}
        self.in_steps = 1
        self.num_inputs = 0
        self.batched_grads = False

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
        model (nn.Module): returns a tensor or a tuple of tensors (backbone taps). A
            ``torch.compile``-d model is differentiated through its eager module
            (:func:`~mmsnn.utils.compile.eager_module`): the hooks catch module outputs.
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
    model = eager_module(model)
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
                result.batched_grads = grads is not None
            except Exception as e:  # noqa: BLE001 - operators without vmap support
                warnings.warn(f'batched ERF gradients unavailable ({type(e).__name__}: '
                              f'{str(e).splitlines()[0] if str(e) else ""}); falling back '
                              'to one backward per target')
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
    out.batched_grads = all(r.batched_grads for r in results)
    for name in first.maps:
        out.maps[name] = sum(r.maps[name] * (r.num_inputs / total) for r in results)
        out.sums[name] = torch.cat([r.sums[name] for r in results], dim=-1)
    return out
