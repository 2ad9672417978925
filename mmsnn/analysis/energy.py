"""Firing rates, synaptic operations and energy per image of a spiking network.

    >>> from mmsnn.analysis import energy_report
    >>> report = energy_report(backbone, torch.randn(4, 3, 128, 128))   # 4 images
    >>> print(report.table())
    >>> report.totals['energy_mj'], report.totals['energy_ann_mj']
    >>> report.save('work_dirs/energy')    # energy.txt, .json, .csv, energy_rates.png

The convention is the one the Spike-driven Transformer, Meta-SpikeFormer (SDT v2), SDT v3,
SpikeYOLO and Spikformer papers use, as restated in the project's reference note
"Firing rates, synaptic operations and energy: how the field counts them"
(``energy_report.md``)::

    E_img = E_MAC * MAC_dense + E_AC * sum_l SOP_l,     SOP_l = T * c_l * FLOPs_l

* ``FLOPs_l``: multiply-accumulates of synaptic layer ``l`` per image per time step, bias
  ignored, on the shapes of the real forward pass (each image is run on its own, so mmdet's
  varying input sizes are counted per image and then averaged). Conv: ``k_h k_w (C_in /
  groups) C_out H_out W_out``; Linear / Conv1d k=1: ``C_in C_out tokens``; transposed conv:
  ``k_h k_w (C_out / groups) C_in H_in W_in``; a product ``a @ b`` of ``[.., m, k] x [.., k,
  n]``: ``m k n`` per batch entry. BN (folded into the conv at inference), residual and
  membrane adds, scaling, pooling, upsampling, concatenation, neuron updates, RoIAlign, NMS
  and decoding are free.
* ``c_l`` (``rate``): mean integer spike count per element of the layer's *input*, 0..D
  (a count n stands for n binary spikes, so it costs n accumulates per synapse). For the
  backbone's quantiser, whose output is ``k / 4``, that is ``4 * mean(input)``: it is never
  multiplied by D again. ``r = c / D`` and the share of non-zero elements are reported too.
  The attention products are counted where they run: in Meta-SDT's named ``MatMul``
  modules (``<attn>.kv``, ``<attn>.qkv``) or as bare ``@`` / ``torch.matmul`` calls of any
  other model (``<module>.matmul<k>``, the k-th product of that module's call).
  For the spike-driven attention computed as ``q (k^T v)``: ``k^T v`` has both sides spikes
  and is charged ``min(c_k, c_v)``; ``q (k^T v)`` multiplies spikes with an integer matrix
  and is charged ``c_q``; the order that really runs is the one reported.
* ``T``: real time steps of the neuron that produced the input, read when it runs (a neck or
  head neuron gets its ``T`` from ``follow_time`` during the forward pass). I-LIF / LIF run
  ``T`` steps; the integer quantiser keeps the time axis of its input (the "T = 1, D = 4"
  model: ``T = 1`` on a backbone image, ``T`` on features a multi-step backbone kept the
  time axis of).
* ``MAC_dense``: FLOPs of every layer whose input is not spikes (the first conv on the
  image, and any layer failing the spike-driven check). How often it is charged depends on
  where its input comes from, never on its shape: the image repeated over the ``T`` steps
  (direct encoding) is the same at every step and is charged once per image; a real-valued
  tensor computed from neurons (e.g. a residual stream) holds ``T`` different steps and is
  charged ``T`` times. The time steps of a tensor are followed through every torch op of
  the forward pass: a neuron's output has its ``T``; an ``expand`` / ``repeat`` over new
  steps multiplies them; a ``mean`` / ``sum`` over the time axis (dim 0 of length ``T``)
  removes them; any other op passes them on.
* Data movement is free even when it is computed with products: the matrix products inside
  an mmcv ``RoIAlign`` (the fast path's ``SeparableRoIAlign``) are not counted.
* ``E_MAC = 4.6 pJ, E_AC = 0.9 pJ`` (45 nm, 32-bit float; Horowitz, ISSCC 2014; preset
  ``'fp32'``), or the ``'int8'`` preset (0.23 pJ / 0.03 pJ). ``E_ANN = E_MAC * sum FLOPs``
  (the same network as an ANN).

Spike-driven check. A tensor is spikes when it comes from a spiking neuron module
(:class:`~mmsnn.models.neurons.MultiSpikeQuantizer`, ``ILIF``, ``LIF``, or a spikingjelly
node) -- directly, through a view (reshape, flatten, transpose) or through a module that keeps
spikes (identity, dropout in eval, max-pooling, zero padding) -- *and* ``input * norm`` is an
integer (tolerance 1e-4) in ``[0, D]``, with ``D`` and ``norm`` read from that neuron.
Values alone are never trusted ({0, 1} could be anything). A layer that fails is charged as
MAC, marked ``spike_driven=False`` and named with the op that produced its input
(``input_from``); the encoding layer that reads the image has ``input_from='input'`` and is
not a violation.
"""
import csv
import json
import math
import os
import os.path as osp
import weakref
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from torch.overrides import TorchFunctionMode

from ..utils.atomic import atomic_open

#: energy per operation in pJ: (E_MAC, E_AC)
ENERGY_PRESETS = {
    'fp32': (4.6, 0.9),   # 45 nm, 32-bit float (Horowitz, ISSCC 2014)
    'int8': (0.23, 0.03),  # 45 nm, 8-bit integer
}

#: what the report counts as free (listed in its metadata)
EXCLUDED_OPS = ('BatchNorm (folded into the conv)', 'bias', 'residual and membrane adds',
                'scaling', 'pooling', 'upsampling', 'concatenation', 'neuron updates',
                'RoIAlign', 'NMS', 'box / mask decoding')

_TOL = 1e-4


class SpikeSource:
    """What the report knows about a spiking neuron: its name, max count ``D``, ``norm``
    (output = count / norm) and the real time steps ``T`` it runs (None: unknown)."""

    __slots__ = ('name', 'D', 'norm', 'T')

    def __init__(self, name, D, norm, T):
        self.name, self.D, self.norm, self.T = name, int(D), float(norm), T


def spike_source(module, name=''):
    """A :class:`SpikeSource` when ``module`` is a spiking neuron, else None.

    mmsnn's neurons: the integer quantiser (``D = max_value``, ``T = 1``: its time steps
    are virtual), I-LIF / LIF (``T`` real steps). Any other spikingjelly node (e.g. the
    time-first transformers' LIF) counts as a binary neuron (``D = 1``, ``norm = 1``) unless
    it has ``max_value``/``max_spike_count``; in multi-step mode its ``T`` is the leading
    dimension of its output.
    The ReLU twin (:class:`~mmsnn.models.neurons.ReLUTwin`) is not a neuron.
    """
    from ..models.neurons import MultiSpikeQuantizer, _MultiStepNeuron
    if isinstance(module, MultiSpikeQuantizer):
        return SpikeSource(name, module.max_value, module.norm, 1)
    if isinstance(module, _MultiStepNeuron):
        return SpikeSource(name, getattr(module, 'max_value', 1), module.norm, module.T)
    from spikingjelly.activation_based.neuron import BaseNode
    if isinstance(module, BaseNode):
        D = getattr(module, 'max_value', getattr(module, 'max_spike_count', 1))
        return SpikeSource(name, D, 1.0, None)
    return None


def _synaptic_type(module):
    """The report's type name of a synaptic module (None for anything else)."""
    from ..models.layers import MatMul
    if isinstance(module, MatMul):
        return 'matmul'
    for cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                nn.ConvTranspose2d, nn.ConvTranspose3d):
        if isinstance(module, cls):
            return cls.__name__
    return None


def _keeps_spikes(module):
    """Modules whose output is spikes when their input is (zero padding, max-pooling,
    identity, dropout in eval, flatten)."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return not module.training
    return isinstance(module, (nn.Identity, nn.Flatten, nn.Unflatten, nn.ZeroPad2d,
                               nn.modules.pooling._MaxPoolNd))


def synaptic_flops(module, inputs, output):
    """Multiply-accumulates of one call of a synaptic module on the whole input tensor
    (all rows, all time steps), bias ignored."""
    kind = _synaptic_type(module)
    if kind == 'matmul':
        return output.numel() * inputs[0].shape[-1]
    if kind == 'Linear':
        return output.numel() * module.in_features
    if kind.startswith('ConvTranspose'):
        return (inputs[0].numel() * (module.out_channels // module.groups)
                * math.prod(module.kernel_size))
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _default_T(model):
    """Real time steps of the model: the largest ``T`` of its stateful neurons (1 if none)."""
    steps = [int(getattr(m, 'T', 1) or 1) for m in model.modules()
             if getattr(m, 'stateful', False) and spike_source(m) is not None]
    return max(steps, default=1)


def _stage_names():
    from ..models.backbones.meta_sdt import _STAGES
    return {name: tap for tap, names in enumerate(_STAGES) for name in names}


class EnergyCounter:
    """Hooks on a model that count FLOPs, spikes and SOPs of every synaptic op per image.

    Use :func:`energy_report` for tensors; this class is for loops that drive the model
    themselves (a test dataloader, a runner)::

        with EnergyCounter(model) as counter:
            for batch in loader:
                with counter.image(num_images=len(batch['inputs'])):
                    model.test_step(batch)
        report = counter.report()

    Every image is one call of :meth:`image` (a call holding ``k`` images counts as ``k``
    images sharing its counts). Neuron states are reset before each image.

    Args:
        model (nn.Module): the model; layer names are those of ``model.named_modules()``.
        T (int | None): time steps along the leading axis of the model's input, for a model
            fed one frame per step (``[T*B, ...]`` or ``[T, B, ...]``); default: the input is
            an image without time axis (a leading axis of 3 may be anything: it is not
            guessed from the shape). The report's ``T`` is this, or the largest ``T`` of the
            model's neurons as they run (1 if none).
        group_fn (callable | None): ``name -> group``; default :meth:`default_group`.
    """

    def __init__(self, model, T=None, group_fn=None):
        self.model = model
        self._T_given = int(T) if T is not None else None
        self._T_seen = _default_T(model)  # raised by the neurons as they run
        self.group_fn = group_fn or self.default_group
        self._modules = dict(model.named_modules())
        self._acc = {}
        self._handles = []
        self._spikes = {}  # id(tensor) -> (weakref, SpikeSource)
        self._producers = {}  # id(tensor) -> (weakref, name)
        self._time = {}  # id(tensor) -> (weakref, (steps, repeated)); see _TimeAndMatmulWatch
        self._in_image = False
        self._busy = False  # the counter's own tensor maths: not part of the model's graph
        self._first_layer = True
        self.num_images = 0
        self.input_shapes = []
        self._stage_of = _stage_names()
        self._stack = []  # names of the modules running now (for bare ``@`` products)
        self._bare = {}  # module name -> bare products counted in its current call
        self._data_movement = {name for name, m in model.named_modules()
                               if isinstance(m, _data_movement_types())}
        seen = set()
        for name, module in model.named_modules():
            if id(module) in seen:  # shared modules: hook (and name) once
                continue
            seen.add(id(module))
            self._handles.append(module.register_forward_pre_hook(self._make_pre_hook(name),
                                                                  with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._make_hook(name, module)))

    # ------------------------------------------------------------------ hooks
    def _make_pre_hook(self, name):
        def pre_hook(mod, args, kwargs):
            if self._in_image:
                if not self._stack:  # the model's own input
                    self._tag_model_input(_tensors(list(args) + list(kwargs.values())))
                self._stack.append(name)
                self._bare[name] = 0
        return pre_hook

    def _tag_model_input(self, tensors):
        """The model's input holds different frames per step only when ``T`` was given; an
        image has no time axis (the model repeats it over the steps, if at all)."""
        if self._T_given:
            for t in tensors:
                self._set_time(t, (self._T_given, False))

    def _make_hook(self, name, module):
        neuron = spike_source(module, name) is not None
        kind = _synaptic_type(module)
        leaf = not any(True for _ in module.children())

        def hook(mod, inputs, output):
            if not self._in_image:
                return
            if self._stack and self._stack[-1] == name:
                self._stack.pop()
            self._busy = True
            try:
                with torch.no_grad():
                    self._after_module(name, mod, kind, leaf, neuron, inputs, output)
            finally:
                self._busy = False
        return hook

    def _after_module(self, name, mod, kind, leaf, neuron, inputs, output):
        if kind is not None:
            self._count(name, kind, list(inputs[:2]) if kind == 'matmul' else [inputs[0]],
                        synaptic_flops(mod, inputs, output))
        outs = _tensors(output)
        if neuron:
            src = self._running_source(name, mod, _tensors(inputs), outs)
            for t in outs:
                self._tag(self._spikes, t, src)
                self._set_time(t, (src.T, False))
        else:
            if _keeps_spikes(mod):
                src = self._source(inputs[0]) if inputs else None
                if src is not None:
                    for t in outs:
                        self._tag(self._spikes, t, src)
            # ops the torch-function watch cannot see (C++ extension kernels writing into
            # their output) leave it untagged: it has the steps of the module's input
            time = self._time_of_all(_tensors(inputs))
            if time is not None:
                for t in outs:
                    if self._time_of(t) is None:
                        self._set_time(t, time)
        for t in outs:  # name the innermost module (or the neuron) that made t
            if leaf or neuron or self._lookup(self._producers, t) is None:
                self._tag(self._producers, t, f'{name} ({type(mod).__name__})')

    def _running_source(self, name, mod, inputs, outs):
        """The :class:`SpikeSource` of a neuron as it runs now: ``T`` is read at this call
        (``follow_time`` sets a neck or head neuron's ``T`` during the forward pass)."""
        src = spike_source(mod, name)
        if src.T is not None and getattr(mod, 'stateful', False):
            steps = int(src.T)
        elif src.T is None and getattr(mod, 'step_mode', 's') == 'm' and outs:
            steps = int(outs[0].shape[0])  # a multi-step spikingjelly node: [T, B, ...]
        else:  # a stateless neuron (the integer quantiser) keeps the steps of its input
            time = self._time_of_all(inputs)
            steps = time[0] if time is not None else int(src.T or 1)
        self._T_seen = max(self._T_seen, steps)
        return SpikeSource(name, src.D, src.norm, steps)

    def _set_time(self, t, time):
        self._time[id(t)] = (weakref.ref(t), time)

    def _time_of(self, t):
        """``(steps, repeated)`` of a tensor made during this image, None for one with no
        time axis (the image itself, parameters, or anything made only from those)."""
        return self._lookup(self._time, t)

    def _time_of_all(self, tensors):
        """The time axis of a result computed from ``tensors``: the most steps among them,
        and repeated (the same values at every step) only if every input with steps is."""
        times = [time for time in map(self._time_of, tensors) if time is not None]
        if not times:
            return None
        return max(s for s, _ in times), all(r for _, r in times)

    def propagate_time(self, func_name, args, kwargs, out):
        """Tag the tensors ``out`` of a torch op with the time axis of its inputs."""
        outs = _tensors(out)
        if not outs:
            return
        time = self._time_of_all(_tensors(list(args) + list(kwargs.values())))
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if func_name in _REPEATS and x is not None and 0 < x.numel() < outs[0].numel():
            steps, repeated = time or (1, True)
            # copies over new steps: every step holds the same values when x had no time axis
            time = (steps * (outs[0].numel() // x.numel()), repeated or steps == 1)
        elif (func_name in _REDUCTIONS and time is not None and time[0] > 1 and x is not None
              and x.dim() and x.shape[0] == time[0] and _reduces_dim0(args, kwargs)):
            time = (1, False)  # the mean (sum, ...) over the time axis: no steps left
        if time is not None:
            for t in outs:
                self._set_time(t, time)

    @staticmethod
    def _tag(table, t, value):
        table[id(t)] = (weakref.ref(t), value)
        base = t._base
        if base is not None and base.numel() == t.numel():  # the same elements
            table[id(base)] = (weakref.ref(base), value)

    @staticmethod
    def _lookup(table, t):
        for c in (t, t._base):
            if c is None:
                continue
            entry = table.get(id(c))
            if entry is not None and entry[0]() is c:
                return entry[1]
        return None

    def _source(self, t):
        return self._lookup(self._spikes, t) if isinstance(t, torch.Tensor) else None

    def _producer(self, t):
        name = self._lookup(self._producers, t)
        if name is not None:
            return name
        return 'input' if self._first_layer else 'a functional op (not a module)'

    def _spike_stats(self, t, src):
        """(count sum, numel, non-zero count) of ``t`` as spikes of ``src``, or a reason
        string when its values are not integer counts in [0, D]."""
        counts = t.detach().float() * src.norm
        rounded = counts.round()
        if counts.numel() and ((counts - rounded).abs().max().item() > _TOL
                               or rounded.min().item() < 0
                               or rounded.max().item() > src.D):
            return (f'output of {src.name} is not an integer count in [0, {src.D}] after '
                    f'x {src.norm:g}')
        return rounded.sum().item(), counts.numel(), int(torch.count_nonzero(rounded))

    @property
    def T(self):
        """Real time steps of the model (given, or the largest ``T`` of its neurons)."""
        return self._T_given or self._T_seen

    def bare_matmul(self, a, b, out):
        """A product ``a @ b`` run outside a :class:`~mmsnn.models.layers.MatMul` module
        (e.g. the zoo transformers' attention), named ``<module>.matmul<k>`` after the module
        running it, k-th product of that call."""
        from ..models.layers import MatMul
        parent = self._stack[-1] if self._stack else ''
        if isinstance(self._modules.get(parent), MatMul):
            return  # counted by the module's hook
        if any(name in self._data_movement for name in self._stack):
            return  # e.g. RoIAlign's interpolation weights: data movement, free
        k = self._bare.get(parent, 0)
        self._bare[parent] = k + 1
        name = f'{parent}.matmul{k}' if parent else f'matmul{k}'
        with torch.no_grad():
            self._count(name, 'matmul', [a, b], out.numel() * a.shape[-1])

    def _count(self, name, kind, operands, total):
        sources = [self._source(t) for t in operands]
        stats, reasons = [], []
        for t, src in zip(operands, sources):
            if src is None:
                stats.append(None)
                reasons.append(f'input from {self._producer(t)} is not spikes')
                continue
            s = self._spike_stats(t, src)
            if isinstance(s, str):
                stats.append(None)
                reasons.append(s)
            else:
                stats.append(s)
        spiking = [(s, src) for s, src in zip(stats, sources) if s is not None]
        if kind == 'matmul' and spiking:
            # spikes x spikes: min(c_a, c_b); spikes x integer matrix: c of the spike side
            stat, src = min(spiking, key=lambda p: p[0][0] / max(p[0][1], 1))
            spike_driven = True
        elif len(spiking) == len(operands):
            stat, src = spiking[0]
            spike_driven = True
        else:
            stat, src, spike_driven = None, None, False
        first = self._first_layer
        producers = [self._producer(t) for t in operands]
        self._first_layer = False
        if spike_driven:
            steps = int(src.T)
            flops = total / steps
        else:  # steps and repetition of a dense input from where it comes from
            steps, repeated = self._time_of_all(operands) or (1, True)
            flops = total / steps
            # the same image at every step is computed once; different steps each cost
            macs = flops if repeated else total
        acc = self._acc.get(name)
        if acc is None:
            acc = self._acc[name] = dict(
                name=name, type=kind, group=self.group_fn(name), spike_driven=True,
                input_from=' x '.join(producers), D=None, T=steps, flops=0.0, sops=0.0,
                macs=0.0, tflops=0.0, count=0.0, elems=0, nonzero=0, calls=0, reason='',
                encoding=False)
        acc['calls'] += 1
        acc['flops'] += flops
        acc['T'] = max(acc['T'], steps)
        if spike_driven:
            count, numel, nonzero = stat
            rate = count / numel if numel else 0.0
            acc['sops'] += steps * rate * flops
            acc['tflops'] += steps * flops
            acc['count'] += count
            acc['elems'] += numel
            acc['nonzero'] += nonzero
            acc['D'] = src.D
        else:
            acc['macs'] += macs
            acc['spike_driven'] = False
            acc['input_from'] = ' x '.join(producers)
            acc['encoding'] = first and all(p == 'input' for p in producers)
            acc['reason'] = '; '.join(r for r in reasons if r)

    # ----------------------------------------------------------------- driving
    @contextmanager
    def image(self, num_images=1, input_shape=None):
        """Count what runs inside as ``num_images`` image(s); resets neuron states first."""
        from spikingjelly.activation_based import functional
        functional.reset_net(self.model)
        self._spikes.clear()
        self._producers.clear()
        self._time.clear()
        self._in_image, self._first_layer = True, True
        self._stack.clear()
        try:
            with _TimeAndMatmulWatch(self):
                yield self
        finally:
            self._in_image = False
            self._spikes.clear()
            self._producers.clear()
            self._time.clear()
        self.num_images += int(num_images)
        if input_shape is not None:
            self.input_shapes.append(tuple(int(s) for s in input_shape))

    def remove(self):
        """Remove the hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def default_group(self, name):
        """``backbone.stage0..4`` (Meta-SDT stage taps), ``neck``, ``rpn_head``,
        ``roi_head.bbox_head`` / ``roi_head.mask_head``, ``decode_head``, ...: the first
        component of the name, with Meta-SDT stages and RoI sub-heads split out."""
        from ..models.backbones.meta_sdt import MetaSDT
        parts = name.split('.')
        for i in range(len(parts)):
            prefix = '.'.join(parts[:i])
            if isinstance(self._modules.get(prefix), MetaSDT) and parts[i] in self._stage_of:
                stage = f'stage{self._stage_of[parts[i]]}'
                return f'{prefix}.{stage}' if prefix else stage
        if parts[0] == 'roi_head' and len(parts) > 2:
            return '.'.join(parts[:2])
        return parts[0]

    # ----------------------------------------------------------------- results
    def report(self, preset='fp32', e_mac=None, e_ac=None, meta=None):
        """The :class:`EnergyReport` of the images counted so far (per-image averages)."""
        if preset not in ENERGY_PRESETS:
            raise ValueError(f'unknown energy preset {preset!r}; choose one of '
                             f'{sorted(ENERGY_PRESETS)} or pass e_mac / e_ac in pJ')
        if self.num_images == 0:
            raise ValueError('no image was counted: run the model inside counter.image()')
        pmac, pac = ENERGY_PRESETS[preset]
        e_mac = pmac if e_mac is None else float(e_mac)
        e_ac = pac if e_ac is None else float(e_ac)
        n = self.num_images
        layers = []
        for acc in self._acc.values():
            spikes = acc['tflops'] > 0
            rate = acc['sops'] / acc['tflops'] if spikes else None
            layer = dict(
                name=acc['name'], type=acc['type'], group=acc['group'],
                spike_driven=acc['spike_driven'], input_from=acc['input_from'],
                T=acc['T'], D=acc['D'], rate=rate,
                r=(rate / acc['D'] if spikes and acc['D'] else None),
                nonzero=(acc['nonzero'] / acc['elems'] if spikes and acc['elems'] else None),
                flops=acc['flops'] / n, sops=acc['sops'] / n, macs=acc['macs'] / n,
                calls=acc['calls'] / n, encoding=acc['encoding'], reason=acc['reason'])
            layer['energy_mj'] = (e_ac * layer['sops'] + e_mac * layer['macs']) * 1e-9
            layers.append(layer)
        meta = dict(meta or {})
        meta.update(num_images=n, T=self.T, e_mac_pj=e_mac, e_ac_pj=e_ac, preset=preset,
                    D=sorted({lay['D'] for lay in layers if lay['D'] is not None}),
                    input_shapes=sorted({str(list(s)) for s in self.input_shapes}),
                    convention=('E = E_MAC * MAC_dense + E_AC * sum SOP, SOP = T * rate * '
                                'FLOPs; FLOPs = MACs per image per time step, bias ignored; '
                                'rate = mean integer spike count per input element (0..D); '
                                'k^T v charged min(rate_k, rate_v), q(k^T v) rate_q; '
                                'E_ANN = E_MAC * sum FLOPs'),
                    excluded=list(EXCLUDED_OPS))
        return EnergyReport(layers, meta, e_mac)


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


def _data_movement_types():
    """Modules that move data and so are free, even when computed with matrix products."""
    from mmcv.ops import RoIAlign  # the fast path's SeparableRoIAlign is one too
    return (RoIAlign,)


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


class EnergyReport:
    """Per-layer and total FLOPs, SOPs, MACs and energy per image.

    Attributes:
        layers (list[dict]): one dict per synaptic op, in forward order: ``name``, ``type``
            ('Conv2d', 'Conv1d', 'Linear', 'matmul', ...), ``group``, ``flops`` (MACs per
            image per time step), ``rate`` (c, 0..D; None for a dense layer), ``r`` (c / D),
            ``nonzero`` (share of non-zero input elements), ``spike_driven``,
            ``input_from`` (the op that produced the input), ``T``, ``D``, ``sops``,
            ``macs``, ``energy_mj``, ``share`` (of the total energy).
        totals (dict): ``flops``, ``sops``, ``macs``, ``energy_mj`` (E_SNN),
            ``energy_ann_mj``, ``ann_snn_ratio``, ``mean_rate`` (sum SOPs / sum T * FLOPs of
            the spike-driven layers), ``violations`` (layers that should take spikes and do
            not) and ``groups`` (the same sums per group: backbone stages, backbone, neck,
            rpn_head, roi_head and its sub-heads, decode_head, ...).
        meta (dict): constants, conventions, number of images, input shapes, T, D.
    """

    CSV_FIELDS = ('name', 'type', 'group', 'spike_driven', 'input_from', 'T', 'D', 'rate', 'r',
                  'nonzero', 'flops', 'sops', 'macs', 'energy_mj', 'share', 'calls')

    def __init__(self, layers, meta, e_mac):
        self.layers = layers
        self.meta = meta
        total_mj = sum(lay['energy_mj'] for lay in layers)
        for lay in layers:
            lay['share'] = lay['energy_mj'] / total_mj if total_mj else 0.0
        self.totals = self._sums(layers, e_mac)
        self.totals['violations'] = [
            dict(name=lay['name'], input_from=lay['input_from'], reason=lay['reason'])
            for lay in layers if not lay['spike_driven'] and not lay['encoding']]
        groups = {}
        for lay in layers:
            keys = [lay['group']]
            if '.' in lay['group']:
                keys.append(lay['group'].split('.')[0])
            for key in keys:
                groups.setdefault(key, []).append(lay)
        self.totals['groups'] = {k: self._sums(v, e_mac) for k, v in groups.items()}

    @staticmethod
    def _sums(layers, e_mac):
        flops = sum(lay['flops'] for lay in layers)
        sops = sum(lay['sops'] for lay in layers)
        energy = sum(lay['energy_mj'] for lay in layers)
        tflops = sum(lay['T'] * lay['flops'] for lay in layers if lay['rate'] is not None)
        ann = e_mac * flops * 1e-9
        return dict(flops=flops, sops=sops, macs=sum(lay['macs'] for lay in layers),
                    energy_mj=energy, energy_ann_mj=ann,
                    ann_snn_ratio=ann / energy if energy else None,
                    mean_rate=sops / tflops if tflops else None)

    # ------------------------------------------------------------------ output
    def summary(self):
        """A few lines: totals, per-group energy and the spike-driven verdict."""
        t, m = self.totals, self.meta
        lines = [f'energy per image ({m["num_images"]} image(s), E_MAC {m["e_mac_pj"]} pJ, '
                 f'E_AC {m["e_ac_pj"]} pJ, T {m["T"]}, D {m["D"]}):',
                 f'  FLOPs {t["flops"] / 1e9:.4f} G   SOPs {t["sops"] / 1e9:.4f} G   '
                 f'MACs (dense) {t["macs"] / 1e9:.4f} G   mean rate {_fmt(t["mean_rate"], 3)}',
                 f'  E_SNN {t["energy_mj"]:.4f} mJ   E_ANN {t["energy_ann_mj"]:.4f} mJ   '
                 f'E_ANN/E_SNN {_fmt(t["ann_snn_ratio"], 2)}']
        for group, g in self.totals['groups'].items():
            lines.append(f'    {group:<22} FLOPs {g["flops"] / 1e9:9.4f} G  '
                         f'SOPs {g["sops"] / 1e9:9.4f} G  MACs {g["macs"] / 1e9:8.4f} G  '
                         f'E {g["energy_mj"]:8.4f} mJ')
        if t['violations']:
            lines.append(f'  NOT spike-driven: {len(t["violations"])} layer(s) take non-spike '
                         'input (charged as MACs):')
            lines += [f'    {v["name"]} <- {v["input_from"]}' for v in t['violations']]
        else:
            lines.append('  spike-driven: every synaptic layer but the encoding layer takes '
                         'spikes')
        return '\n'.join(lines)

    def table(self):
        """The per-layer table followed by :meth:`summary`."""
        head = (f'{"layer":<48} {"type":<8} {"spk":<3} {"T":>2} {"rate":>6} {"r":>5} '
                f'{"nz":>5} {"FLOPs":>11} {"SOPs":>11} {"MACs":>11} {"mJ":>9} {"share":>6}')
        rows = [head, '-' * len(head)]
        for lay in self.layers:
            rows.append(
                f'{lay["name"][-48:]:<48} {lay["type"][:8]:<8} '
                f'{"y" if lay["spike_driven"] else "N":<3} {lay["T"]:>2} '
                f'{_fmt(lay["rate"], 3):>6} {_fmt(lay["r"], 2):>5} {_fmt(lay["nonzero"], 2):>5} '
                f'{lay["flops"]:>11.4g} {lay["sops"]:>11.4g} {lay["macs"]:>11.4g} '
                f'{lay["energy_mj"]:>9.3g} {100 * lay["share"]:>5.1f}%')
        return '\n'.join(rows) + '\n' + self.summary()

    def as_dict(self):
        return dict(meta=self.meta, totals=self.totals, layers=self.layers)

    def to_json(self, path):
        _write_atomic(path, lambda f: json.dump(self.as_dict(), f, indent=2))

    def to_csv(self, path):
        def write(f):
            w = csv.DictWriter(f, fieldnames=self.CSV_FIELDS, extrasaction='ignore')
            w.writeheader()
            for lay in self.layers:
                w.writerow({k: ('' if lay[k] is None else lay[k]) for k in self.CSV_FIELDS})
        _write_atomic(path, write, newline='')

    def plot_rates(self, path, title=None):
        """Bar chart of the firing rate c of every synaptic layer (colour: group; a red
        cross marks a layer whose input is not spikes)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed
        from matplotlib.figure import Figure
        n = len(self.layers)
        fig = Figure(figsize=(max(8.0, 0.12 * n + 2), 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        groups = list(dict.fromkeys(lay['group'] for lay in self.layers))
        colours = {g: f'C{i % 10}' for i, g in enumerate(groups)}
        for g in groups:
            idx = [i for i, lay in enumerate(self.layers) if lay['group'] == g]
            ax.bar(idx, [self.layers[i]['rate'] or 0.0 for i in idx], width=0.8,
                   color=colours[g], label=g)
        dense = [i for i, lay in enumerate(self.layers) if lay['rate'] is None]
        if dense:
            ax.plot(dense, [0] * len(dense), 'rx', label='input not spikes (MAC)')
        ax.set_xlim(-1, n)
        ax.set_xlabel('synaptic layer (forward order)')
        ax.set_ylabel('firing rate c (mean spike count per input element)')
        ax.set_title(title or f'firing rate per layer, E_SNN {self.totals["energy_mj"]:.3g} mJ '
                              f'per image, E_ANN/E_SNN {_fmt(self.totals["ann_snn_ratio"], 2)}')
        if n <= 60:
            ax.set_xticks(range(n))
            ax.set_xticklabels([lay['name'] for lay in self.layers], rotation=90, fontsize=5)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        with atomic_open(path) as f:
            fig.savefig(f, format='png', dpi=120)
        return path

    def save(self, out_dir, prefix='energy'):
        """Write ``{prefix}.txt`` (table), ``.json``, ``.csv`` and ``{prefix}_rates.png``
        into ``out_dir``; returns their paths."""
        os.makedirs(out_dir, exist_ok=True)
        paths = dict(table=osp.join(out_dir, f'{prefix}.txt'),
                     json=osp.join(out_dir, f'{prefix}.json'),
                     csv=osp.join(out_dir, f'{prefix}.csv'),
                     figure=osp.join(out_dir, f'{prefix}_rates.png'))
        _write_atomic(paths['table'], lambda f: f.write(self.table() + '\n'))
        self.to_json(paths['json'])
        self.to_csv(paths['csv'])
        self.plot_rates(paths['figure'])
        return paths


def _fmt(value, digits):
    return '-' if value is None else f'{value:.{digits}f}'


def _write_atomic(path, write, newline=None):
    with atomic_open(path, 'w', newline=newline) as f:
        write(f)


def _images(inputs):
    if isinstance(inputs, torch.Tensor):
        return [inputs[i:i + 1] for i in range(inputs.shape[0])]
    return list(inputs)


def energy_report(model, inputs, forward=None, T=None, preset='fp32', e_mac=None, e_ac=None,
                  meta=None, group_fn=None):
    """Run ``model`` image by image and return its :class:`EnergyReport` (per image).

    Args:
        model (nn.Module): any module; called as ``model(x)`` (or ``forward(model, x)``),
            in eval mode and without gradients (its mode is restored afterwards).
        inputs (Tensor | Sequence): a ``[B, ...]`` tensor of B images (each is run alone
            as ``x[i:i+1]``), or a sequence of per-image inputs passed as they are (e.g.
            ``[T, C, H, W]`` tensors for a model that takes time-folded input).
        forward (callable | None): ``forward(model, x)`` instead of ``model(x)``.
        T (int | None): time steps folded into the leading axis of each input, for a model
            fed time-folded frames (see :class:`EnergyCounter`); spike layers take ``T``
            from their neuron.
        preset (str): 'fp32' (E_MAC 4.6 pJ, E_AC 0.9 pJ) or 'int8' (0.23 / 0.03 pJ);
            ``e_mac`` / ``e_ac`` (pJ) override it.
        meta (dict | None): extra metadata stored in the report (config, checkpoint...).
        group_fn (callable | None): ``layer name -> group`` for the subtotals.
    """
    forward = forward or (lambda m, x: m(x))
    images = _images(inputs)
    if not images:
        raise ValueError('energy_report needs at least one input image')
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with EnergyCounter(model, T=T, group_fn=group_fn) as counter, torch.no_grad():
            for x in images:
                shape = x.shape if isinstance(x, torch.Tensor) else None
                with counter.image(input_shape=shape):
                    forward(model, x)
            return counter.report(preset, e_mac, e_ac, meta)
    finally:
        for m, mode in modes.items():
            m.training = mode


class EnergyHook(Hook):
    """mmengine hook that adds the energy report to a test run (``tools/test.py --energy``).

    Counts every test step (``len(data_batch['inputs'])`` images; run the test loader
    with ``batch_size=1`` so that each image is counted at its own size, without the batch's
    padding) and, after the test, writes the table, JSON, CSV and figure into ``out_dir``
    (default ``{work_dir}/energy``) and prints the summary.

    The count wraps the model's ``test_step`` rather than opening in ``before_test_iter``
    and closing in ``after_test_iter``: when a step raises, mmengine calls no further hook,
    and the counter's torch-function mode would stay pushed. If a step raises, the model is
    left as it was (no counting hooks, no wrapper) and the error goes on.
    """

    priority = 'NORMAL'

    def __init__(self, out_dir=None, preset='fp32', meta=None):
        self.out_dir = out_dir
        self.preset = preset
        self.meta = meta or {}
        self.counter = None
        self.report = None
        self.paths = None

    def before_test(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        self.counter = EnergyCounter(model)
        self._runner_model = runner.model
        test_step = runner.model.test_step

        def counted_test_step(data):
            n = len(data['inputs']) if isinstance(data, dict) and 'inputs' in data else 1
            try:
                with self.counter.image(num_images=n):
                    return test_step(data)
            except BaseException:
                self._release()
                raise

        runner.model.test_step = counted_test_step

    def _release(self):
        """Remove the counting hooks and the ``test_step`` wrapper from the model."""
        self.counter.remove()
        if 'test_step' in vars(self._runner_model):
            del self._runner_model.test_step

    def after_test(self, runner):
        self._release()
        from mmengine.dist import is_main_process
        if not is_main_process() or self.counter.num_images == 0:
            return
        self.report = self.counter.report(self.preset, meta=self.meta)
        out_dir = self.out_dir or osp.join(runner.work_dir, 'energy')
        self.paths = self.report.save(out_dir)
        print(self.report.summary())
        print(f'energy report (table, JSON, CSV, figure) in {out_dir}')


__all__ = ['energy_report', 'EnergyCounter', 'EnergyReport', 'EnergyHook', 'ENERGY_PRESETS',
           'spike_source', 'synaptic_flops']
