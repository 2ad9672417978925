"""Convolutions (and fcs) of spike counts as exact integer products (CPU inference, AMX).

A convolution fed by a spiking neuron reads ``count / norm`` with integer counts ``0..D``
(``D = 4`` in the Meta-SDT): as uint8 they are exact. The float32 weight ``w`` of each output
channel is split into three int8 "limbs" with float32 scales::

    w  ~  s1 q1 + s2 q2 + s3 q3      (q_i int8 in [-127, 127], each limb the rounded residual
                                      of the ones before it, s_i = max|residual| / 127)

which represents ``w`` to within ``max|w| * 2^-23`` (each limb leaves half a level of
1/127 of the one before). oneDNN's quantized convolution (``onednn::qconv2d_pointwise``:
uint8 x int8 products summed in int32, exactly, then scaled to float32) computes the three
limbs in one call, stacked along the output channels, and the caller adds them (smallest
first) and the bias. The result is as close to the float64 convolution as float32's own
convolution is, or closer (``tests/test_ops/test_count_conv.py`` bounds it against float64
on any CPU), and on a CPU with AMX (int8 tile products: Intel Xeon Sapphire Rapids and
later) the three int8 products cost less than one float32 convolution.

Which convs pay was chosen from per-shape timings of the s-size SRB backbone's convs at
800x1216 on an Intel Xeon [avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16], one
thread (``tools/analysis/benchmark_count_conv.py`` prints them for any CPU), and checked on
the whole compiled backbone (docs/en/benchmarks.md): the convs with a kernel larger than 1x1
and the 1x1 convs that narrow the channels at least 2x from 128 or more
(:func:`count_conv_applies`). A 1x1 conv that keeps or widens the channels writes three
outputs as large as its input or larger, which its consumer then reads: with those swapped
too the compiled backbone got slower. Depthwise convs have no count form here (grouped
convs cannot be stacked per output); :func:`to_channels_last` makes oneDNN compute them in
channels-last layout instead, which was faster per conv there (one-off timings). Without
AMX nothing is installed by default (:func:`count_conv_pays`): on an AMD EPYC with AVX-512
VNNI the same table showed the 1x1 count convs 1.2-2.8x slower than float32 and the 3x3 ones
from 64 channels 1.2-1.7x faster, about 0.06 s of the backbone's 1.1 s before the
conversions, where the fast path's Winograd convs already take the largest of them
(docs/en/benchmarks.md).

Where the conversions go: the spikes become uint8 counts in channels-last layout, and the
limbs' sum comes back channels-first. Compiled, inductor makes ``round(x * norm) -> uint8``
part of the neuron's own kernel and the limbs' sum part of the consumer's kernel, and the
convolution is one opaque op in the graph, ``mmsnn::count_conv`` (the packed weights are
looked up by a key: they are oneDNN's opaque tensors, which the compiler cannot trace): so
:func:`mmsnn.engine.compile.compile_for_inference` installs the convs above in the compiled
parts (``tools/test.py --compile``). In eager mode both conversions are passes of their own
(the sum ends in 2-d transposes: ATen's 4-d channels-last to channels-first copy was several
times slower): there only large products outweigh them, the convs with a kernel above 1x1 from
128 channels or more and the fcs that narrow 2x or more (:class:`CountLinear`, whose rows
are already channels-last pixels), which :func:`mmsnn.deploy.convert_for_inference` installs
in the parts that stay eager (the RPN, mask, seg and bbox heads). Both only on a CPU with
AMX, in float32.

:class:`CountConv2d` / :class:`CountConv1d` / :class:`CountLinear` are ``nn.Conv2d`` /
``nn.Conv1d`` / ``nn.Linear`` (same parameters, same state dict) that take the count path only
for a no-grad float32 CPU input; everywhere else (float64, autograd, CUDA) they are the
ordinary layer. The weights are packed when the module is made: load the trained weights
(and fold the BNs) before, as for every inference rewrite.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

#: limbs per weight: 2 limbs (~2^-14 of the largest weight) moved spikes at the backbone's
#: end (2e-2 relative output change); 3 are below float32's own conv rounding
LIMBS = 3

#: packed convolutions, indexed by the key a module keeps (oneDNN's packed weights are opaque
#: tensors that the compiled graph cannot hold; it passes the key instead)
_PACKED = []


def count_conv_supported():
    """Whether this torch has oneDNN's quantized convolution on this CPU."""
    return (hasattr(torch.ops, 'onednn') and hasattr(torch.ops.onednn, 'qconv_prepack')
            and torch.backends.mkldnn.is_available())


def count_conv_pays():
    """Whether count convolutions are faster than float32 ones on this CPU: AMX int8 tiles
    (without them the int8 convolutions are slower; see the module docstring), and oneDNN
    allowed to use them (``ONEDNN_MAX_CPU_ISA``, e.g. ``AVX2`` to run an older CPU's kernels,
    keeps it from AMX)."""
    isa = os.environ.get('ONEDNN_MAX_CPU_ISA', 'ALL').upper()
    amx = getattr(torch.cpu, '_is_amx_tile_supported', None)
    return (count_conv_supported() and amx is not None and bool(amx())
            and (isa == 'ALL' or 'AMX' in isa))


def count_conv_applies(conv, compiled=True):
    """Whether ``conv`` is of a kind that runs faster on counts (measured on AMX, see the module
    docstring). ``compiled``: a full (not grouped) conv with a kernel larger than 1, or a 1x1
    conv (or ``nn.Linear``) from at least 128 channels to at most half as many; a 1x1 conv
    that keeps or widens the channels writes, and its consumer reads, three times as large an
    output as it reads. Eager: the conversion to counts and the limbs' sum are passes of their
    own, so only the convs with a kernel larger than 1 from 128 channels or more, where the
    product outweighs them, and the narrowing ``nn.Linear`` (no layout change)."""
    if isinstance(conv, nn.Linear):  # a 1x1 conv: only where it narrows
        return conv.in_features >= 128 and conv.in_features >= 2 * conv.out_features
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)) or conv.padding_mode != 'zeros' or \
            isinstance(conv.padding, str) or conv.groups != 1:
        return False
    wide = any(k > 1 for k in conv.kernel_size)
    if not compiled:
        return wide and conv.in_channels >= 128
    return wide or (conv.in_channels >= 128 and conv.in_channels >= 2 * conv.out_channels)


def weight_limbs(weight, limbs=LIMBS):
    """``weight`` ([O, ...], float) as ``limbs`` pairs ``(q int8 [O, ...], s float32 [O])``,
    largest first, with ``weight ~ sum s_i q_i`` per output channel (computed in float64 from
    the float32 scales actually used, so each residual is what the limbs so far leave)."""
    w = weight.detach().double()
    rows = w.reshape(w.shape[0], -1)
    shape = (-1,) + (1,) * (w.dim() - 1)
    out = []
    for _ in range(limbs):
        amax = rows.abs().amax(1)
        s = torch.where(amax > 0, amax / 127, torch.ones_like(amax)).float()
        q = torch.round(w / s.double().view(shape)).clamp_(-127, 127)
        w = w - q * s.double().view(shape)
        rows = w.reshape(w.shape[0], -1)
        out.append((q.to(torch.int8), s))
    return out


class _Packed:
    """One convolution's limbs, packed for oneDNN as one convolution with ``LIMBS`` times the
    output channels (limb ``i`` of output channel ``o`` is output channel ``i * O + o``), and
    its geometry. One call computes all limbs: oneDNN's ``sum`` post-op, which would add them
    in place, copies its accumulator on every call in torch 2.13."""

    def __init__(self, conv, norm):
        weight = conv.weight.detach().float().cpu()
        if isinstance(conv, nn.Linear):  # a 1x1 conv of the rows as pixels
            weight = weight[:, :, None, None]
            self.stride, self.padding, self.dilation = [1, 1], [0, 0], [1, 1]
        else:
            if conv.groups != 1:
                raise ValueError('count convolution: grouped convs are not supported (their '
                                 'limbs cannot be stacked along the output channels)')
            if weight.dim() == 3:  # a Conv1d is a Conv2d of height 1
                weight = weight.unsqueeze(2)
            # height 1: stride 1, no padding, dilation 1
            pair = (lambda v, height: [height, v[0]]) if conv.weight.dim() == 3 else \
                (lambda v, height: list(v))
            self.stride, self.padding = pair(conv.stride, 1), pair(conv.padding, 0)
            self.dilation = pair(conv.dilation, 1)
        self.kernel = list(weight.shape[2:])
        self.out_channels = weight.shape[0] * LIMBS
        self.x_scale = 1.0 / float(norm)
        limbs = weight_limbs(weight)
        q = torch.cat([q for q, _ in limbs])
        self.scales = torch.cat([s for _, s in limbs])
        self.zero_points = torch.zeros(self.out_channels, dtype=torch.int64)
        self.weight = torch.ops.onednn.qconv_prepack(q, self.scales, self.x_scale, 0, self.stride,
                                                     self.padding, self.dilation, 1, None)

    def out_size(self, n, h, w):
        size = [(x + 2 * p - d * (k - 1) - 1) // st + 1 for x, p, d, k, st in
                zip((h, w), self.padding, self.dilation, self.kernel, self.stride)]
        return [n, self.out_channels] + size

    def __call__(self, counts):
        """The limbs' float32 convolutions of ``counts / norm`` (``counts``: uint8 [N, C, H, W],
        channels-last, oneDNN's layout, which the caller makes so that a compiled graph writes
        the counts in it): [N, LIMBS * O, H', W'], channels-last."""
        return torch.ops.onednn.qconv2d_pointwise(
            counts, self.x_scale, 0, self.weight, self.scales, self.zero_points, None,
            self.stride, self.padding, self.dilation, 1, 1.0, 0, torch.float32, 'none', [], '')


def _count_conv_eager(counts, key):
    return _PACKED[key](counts)


def _define_compiled_op():
    """``mmsnn::count_conv(counts, key)``: the count convolution as one opaque op of a compiled
    graph. None before torch 2.4 (no ``torch.library.custom_op``): then nothing is rewritten."""
    if not hasattr(torch.library, 'custom_op'):
        return None

    @torch.library.custom_op('mmsnn::count_conv', mutates_args=())
    def count_conv(counts: torch.Tensor, key: int) -> torch.Tensor:
        return _count_conv_eager(counts, key)

    @count_conv.register_fake
    def _(counts, key):
        packed = _PACKED[key]
        return counts.new_empty(packed.out_size(*counts.shape[:1], *counts.shape[2:]),
                                dtype=torch.float32).contiguous(memory_format=torch.channels_last)

    return count_conv


_count_conv_op = _define_compiled_op()


def packed_conv(counts, key):
    """The packed convolution ``key`` of ``counts`` (uint8, channels-last): the custom op in a
    compiled graph, the oneDNN call itself in eager mode. [N, LIMBS * O, H', W'],
    channels-last."""
    return _count_conv_op(counts, key) if torch.compiler.is_compiling() else \
        _count_conv_eager(counts, key)


def sum_limbs(z, bias=None):
    """The limbs of :func:`packed_conv`'s output ``z`` added, smallest first, then ``bias``:
    ``[N, H' * W', O]``, the channels-last pixels as rows (``z`` seen as ``[N, H'W', LIMBS, O]``,
    a view). Compiled, inductor makes this part of the consumer's kernel."""
    n, _, h, w = z.shape
    limbs = z.permute(0, 2, 3, 1).reshape(n, h * w, LIMBS, -1)
    y = limbs[:, :, LIMBS - 1] + limbs[:, :, LIMBS - 2]
    for i in range(LIMBS - 3, -1, -1):
        y += limbs[:, :, i]
    if bias is not None:
        y += bias
    return y


def _takes_count_path(layer, x):
    """Whether ``layer`` (a count conv or fc) computes ``x`` on counts: a no-grad float32 CPU
    input and weight, and packed weights; anything else is the ordinary layer's."""
    return (x.dtype == torch.float32 and x.device.type == 'cpu' and not torch.is_grad_enabled()
            and layer.weight.dtype == torch.float32 and layer.count_key is not None)


class _CountConvMixin:
    """The forward of :class:`CountConv2d` and :class:`CountConv1d`."""

    #: the input's ``norm`` (spikes are ``count / norm``) and the key of the packed weights
    spike_norm = None
    count_key = None
    #: eager: return the channels-last result as it is (a permuted view, values the same)
    #: instead of transposing it to channels-first; set by the fast path inside a module
    #: whose consumers take any layout (``count_conv_channels_last``)
    channels_last_output = False

    def forward(self, x):
        if not _takes_count_path(self, x):
            return super().forward(x)
        one_d = isinstance(self, nn.Conv1d)
        # exact: x holds count / norm; compiled, this is part of the neuron's kernel
        counts = x * self.spike_norm
        counts = (counts.unsqueeze(2) if one_d else counts).round_()
        counts = counts.to(dtype=torch.uint8, memory_format=torch.channels_last)
        z = packed_conv(counts, self.count_key)
        n, _, h, w = z.shape
        y = sum_limbs(z, self.bias)
        o = y.shape[-1]
        if torch.compiler.is_compiling():
            # the model's layout: inductor's consumer kernel reads the channels-last sum
            # directly (a channels-last tensor reaching ATen's float32 convs would be copied
            # there)
            y = y.view(n, h, w, o).permute(0, 3, 1, 2).contiguous()
        elif self.channels_last_output:  # consumers that take any layout: no transpose
            y = y.view(n, h, w, o).permute(0, 3, 1, 2)
        else:
            out = torch.empty(n, o, h * w, dtype=y.dtype)
            for i in range(n):  # 2-d transposes: ATen's 3-/4-d ones were slower here
                out[i].copy_(y[i].t())
            y = out.view(n, o, h, w)
        return y.squeeze(2) if one_d else y


class CountConv2d(_CountConvMixin, nn.Conv2d):
    """``nn.Conv2d`` fed by spikes ``count / norm``, computed on the counts in int8 (see the
    module docstring). Made from an existing conv by :func:`to_count_conv`."""


class CountConv1d(_CountConvMixin, nn.Conv1d):
    """``nn.Conv1d`` fed by spikes ``count / norm``, computed on the counts in int8."""


class _ChannelsLastMixin:
    """Forward of a depthwise conv computed in channels-last layout (no-grad float32 CPU)."""

    def forward(self, x):
        if x.dtype != torch.float32 or x.device.type != 'cpu' or torch.is_grad_enabled() or \
                x.dim() != 4:
            return super().forward(x)
        # compiled, both layout changes are part of the neighbouring kernels
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


_CHANNELS_LAST_CLASSES = {}


def depthwise_applies(conv):
    """Whether ``conv`` is a depthwise ``nn.Conv2d`` (one filter per channel), which oneDNN
    computed faster in channels-last layout on the AMX Xeon (one-off per-conv timings) and
    which stays in float32 (as counts it was slower: its output is small next to its input)."""
    return isinstance(conv, nn.Conv2d) and conv.groups > 1 and \
        conv.groups == conv.in_channels == conv.out_channels


def to_channels_last(conv):
    """Make ``conv`` (an ``nn.Conv2d`` or a subclass, in place) compute its no-grad float32 CPU
    forward in channels-last layout; its class keeps the original as a base. Returns it."""
    base = type(conv)
    if issubclass(base, _ChannelsLastMixin):
        return conv
    if base not in _CHANNELS_LAST_CLASSES:
        _CHANNELS_LAST_CLASSES[base] = type(f'ChannelsLast{base.__name__}',
                                            (_ChannelsLastMixin, base), {})
    conv.__class__ = _CHANNELS_LAST_CLASSES[base]
    return conv


class CountLinear(nn.Linear):
    """``nn.Linear`` fed by spikes ``count / norm``, computed on the counts in int8 as a 1x1
    count convolution whose pixels are the rows: the rows of counts, ``[R, K]`` row-major,
    are already the channels-last ``[1, K, 1, R]`` oneDNN reads, and its channels-last output
    ``[1, LIMBS * O, 1, R]`` is ``[R, LIMBS, O]`` row-major: no layout change either way."""

    spike_norm = None
    count_key = None

    def forward(self, x):
        if not _takes_count_path(self, x):
            return super().forward(x)
        lead, k = x.shape[:-1], x.shape[-1]
        rows = x.reshape(-1, k)
        counts = (rows * self.spike_norm).round_().to(torch.uint8)
        counts = counts.view(1, 1, *counts.shape).permute(0, 3, 1, 2)  # [1, K, 1, R]
        y = sum_limbs(packed_conv(counts, self.count_key), self.bias)  # [1, R, O]
        return y.reshape(*lead, y.shape[-1])


def to_count_conv(conv, norm):
    """Turn ``conv`` (an ``nn.Conv2d``, ``nn.Conv1d`` or ``nn.Linear``, or a subclass such as a
    Winograd conv, in place) into a count conv for inputs ``count / norm``; returns it."""
    if _count_conv_op is None or not count_conv_supported():
        return conv
    max_count = 255
    if not 0 < norm <= max_count:
        raise ValueError(f'count convolution: norm {norm} outside (0, {max_count}]')
    _PACKED.append(_Packed(conv, norm))
    conv.__class__ = CountLinear if isinstance(conv, nn.Linear) else \
        CountConv1d if isinstance(conv, nn.Conv1d) else CountConv2d
    conv.spike_norm = float(norm)
    conv.count_key = len(_PACKED) - 1
    return conv


def install_count_convs(module, *inputs, force=False, compiled=True, run=None, skip=()):
    """Turn the convolutions of ``module`` that a spiking neuron feeds (found by a forward of
    ``inputs``, :func:`spike_fed_convs`, through ``run`` if given) and that run faster on
    counts (:func:`count_conv_applies` for a ``compiled`` module or an eager one) into count
    convs, in place; compiled, also the depthwise convs into channels-last ones. Not the
    modules under the names in ``skip``. Only for a float32 CPU module on a CPU where they pay
    (:func:`count_conv_pays`), unless ``force``. Returns the names of the converted convs and
    the output for ``inputs``."""
    params = list(module.parameters())
    usable = _count_conv_op is not None and count_conv_supported() and params and all(
        p.dtype == torch.float32 and p.device.type == 'cpu' for p in params)
    if not usable or not (force or count_conv_pays()):
        return [], None
    fed, out = spike_fed_convs(module, *inputs, run=run)

    def kept(name):
        return not any(name == s or name.startswith(s + '.') for s in skip)

    modules = dict(module.named_modules())
    names = [name for name, norm in fed.items()
             if kept(name) and not isinstance(modules[name], (_CountConvMixin, CountLinear))
             and count_conv_applies(modules[name], compiled)]
    for name in names:
        to_count_conv(modules[name], fed[name])
    if compiled:
        for name, m in modules.items():
            if kept(name) and depthwise_applies(m):
                to_channels_last(m)
    return names, out


def is_neuron(module):
    """mmsnn's neurons, told by their float ``norm`` (their outputs are ``count / norm``;
    ``mmsnn.models.neurons``, which this kernel module does not import)."""
    return isinstance(getattr(module, 'norm', None), float)


def probe_image(module, size=128):
    """A seeded random ``[1, C, size, size]`` image for the probe forward of
    :func:`install_count_convs`, ``C`` the input channels of ``module``'s first ``nn.Conv2d``
    (None without one)."""
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        return None
    return torch.rand(1, first.in_channels, size, size,
                      generator=torch.Generator().manual_seed(0))


def spike_fed_convs(module, *inputs, run=None):
    """The convolutions of ``module`` whose input, in a no-grad eval forward of ``inputs``, is
    the output of a spiking neuron (:func:`is_neuron`) and holds integer counts ``0..255`` over
    the neuron's ``norm``: a dict ``{name: norm}``, and the module's output. ``run``: what to
    call on ``inputs`` instead of ``module`` (e.g. a detector's ``extract_feat`` and heads).
    The modules' train/eval modes are restored."""
    produced, found, hooks = {}, {}, []

    def neuron_hook(mod, args, out):
        if torch.is_tensor(out):
            produced[id(out)] = (out, float(mod.norm))

    def conv_hook(name):
        def hook(mod, args):
            x = args[0]
            if id(x) in produced and produced[id(x)][0] is x:
                norm = produced[id(x)][1]
                counts = x.double() * norm
                if bool((counts == counts.round()).all()) and bool(
                        ((counts >= 0) & (counts <= 255)).all()):
                    found[name] = norm
        return hook

    for name, m in module.named_modules():
        if is_neuron(m):
            hooks.append(m.register_forward_hook(neuron_hook))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_pre_hook(conv_hook(name)))
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            out = (run or module)(*inputs)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return found, out


__all__ = ['CountConv1d', 'CountConv2d', 'CountLinear', 'LIMBS', 'count_conv_applies',
           'count_conv_pays', 'count_conv_supported', 'depthwise_applies', 'install_count_convs',
           'packed_conv', 'probe_image', 'spike_fed_convs', 'sum_limbs', 'to_channels_last',
           'to_count_conv', 'weight_limbs']
