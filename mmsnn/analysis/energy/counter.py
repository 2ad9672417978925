"""``EnergyCounter``: forward hooks that count FLOPs, spikes and SOPs of every synaptic
op of a model, image by image."""
import weakref
from contextlib import contextmanager

import torch

from ...utils.compile import eager_module
from .convention import ENERGY_PRESETS, EXCLUDED_OPS, _TOL
from .flops import _data_movement_types, _synaptic_type, synaptic_flops
from .provenance import SpikeSource, _default_T, _keeps_spikes, _tensors, spike_source
from .report import EnergyReport
from .time_watch import _REDUCTIONS, _REPEATS, _TimeAndMatmulWatch, _reduces_dim0


def _stage_names():
    from ...models.backbones.meta_sdt import _STAGES
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
        model = eager_module(model)  # a torch.compile result: its module (hooks need Python)
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
        self._forward_shape = None  # see image(input_shape='forward')
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
                    tensors = _tensors(list(args) + list(kwargs.values()))
                    self._tag_model_input(tensors)
                    if name == '' and tensors:  # the model itself, after any preprocessing
                        self._forward_shape = tuple(tensors[0].shape)
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
        from ...models.layers import MatMul
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
        """Count what runs inside as ``num_images`` image(s); resets neuron states first.

        ``input_shape`` is recorded in the report's metadata; ``'forward'`` records the shape
        of the first tensor the model's own ``forward`` receives (for a ``test_step``, which
        preprocesses its batch inside)."""
        from spikingjelly.activation_based import functional
        functional.reset_net(self.model)
        self._spikes.clear()
        self._producers.clear()
        self._time.clear()
        self._in_image, self._first_layer = True, True
        self._stack.clear()
        self._forward_shape = None
        try:
            with _TimeAndMatmulWatch(self):
                yield self
        finally:
            self._in_image = False
            self._spikes.clear()
            self._producers.clear()
            self._time.clear()
        self.num_images += int(num_images)
        if input_shape == 'forward':
            input_shape = self._forward_shape
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
        from ...models.backbones.meta_sdt import MetaSDT
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
