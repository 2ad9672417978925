"""Spiking neurons used by every mmsnn model.

Two families, selected by a ``neuron_cfg`` dict:

* ``MultiSpikeQuantizer`` -- the reference's integer multi-spike quantiser
  ``s = round(clamp(u, 0, D)) / norm`` with a hard straight-through window on ``0 <= u <= D``.
  It is stateless: the paper's "T = 4" is virtual (an integer count n stands for n binary
  spikes spread over D steps at deployment), so a model built with it computes one step.
  The maths is spikingjelly's ``surrogate.MultiLevelSpikeCount`` (tested equal, forward and
  backward); our autograd function differs only in what it keeps for the backward pass: a
  1-byte window mask instead of the 4-byte input, and the division by ``norm`` fused in.
  Spike sites are the largest saved activations of the backbone, so this is what keeps the
  training step's memory down (``tools/analysis/benchmark_backbone.py``).
* :class:`MultiStepLIF` -- the LIF of the time-first spiking transformers (Spikformer,
  SDT v1, QKFormer): spikingjelly's ``LIFNode`` on ``[T, B, ...]`` input, built by those
  backbones directly (not through ``neuron_cfg``).
* ``IntegerLIF`` / ``BinaryLIF`` -- real multi-step neurons from spikingjelly (membrane, leak, reset),
  for models with ``T > 1`` time steps. They see tensors with time folded into the batch,
  ``[T*B, ...]``, unfold them to ``[T, B, ...]`` and run spikingjelly's multi-step mode.

Registry keys are the class names (``MultiSpikeQuantizer``, ``IntegerLIF``, ``BinaryLIF``,
``ReLUTwin``); the first keys (``MultiSpike``, ``ILIF``, ``LIF``, ``ReLU``) are aliases
(:data:`NEURON_ALIASES`) that build the same classes.

Every forward of a stateful neuron starts from a reset membrane, so nothing leaks from one
batch into the next (spikingjelly would otherwise keep ``v`` between calls).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _torch_module  # the global forward hooks
from mmengine.registry import Registry
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate

from ..ops.lean_ilif import LeanILIF, ilif_steps
from ..utils.runtime import autocast_on

NEURONS = Registry('spiking neuron', scope='mmsnn')

#: the neurons' first registry keys, kept as aliases of their class names (every config and
#: released checkpoint written with them builds the same class)
NEURON_ALIASES = {'MultiSpike': 'MultiSpikeQuantizer', 'ILIF': 'IntegerLIF', 'LIF': 'BinaryLIF',
                  'ReLU': 'ReLUTwin'}


def _register(cls):
    """Register ``cls`` in :data:`NEURONS` under its class name and its old key."""
    old = [key for key, name in NEURON_ALIASES.items() if name == cls.__name__]
    NEURONS.register_module(name=[cls.__name__] + old, module=cls)
    return cls


def _tag_spikes(s, norm):
    """Mark ``s`` as integer spike counts / ``norm``, so that :func:`compact_spike_storage`
    saves it as uint8. Not when compiling: no saved-tensor hooks run in a compiled graph, and
    dynamo refuses the tag inside a checkpointed branch (``with_cp``) as a side effect."""
    if not torch.compiler.is_compiling():
        s._mmsnn_spike_norm = norm


@_register
class MultiSpikeQuantizer(nn.Module):
    """Integer multi-spike quantiser: ``round(clamp(u, 0, max_value)) / norm``.

    Same behaviour in train and eval by default. ``eval_max_value`` clips to another range
    in eval mode only: the reference's detection neck trains with counts 0..4 and runs its
    released models with binary spikes (``eval_max_value=1``); set it only to reproduce
    those models (``configs/det/reference``). Round half to even (``torch.round``).
    Backward: ``1 / norm`` inside ``[0, max_value]`` (both ends inclusive, on the pre-clamp
    input), zero outside. The autograd function only uses clamp/round/compare, so it is
    dtype-agnostic and works under fp16/bf16 autocast.
    """

    stateful = False
    #: deploy mode (:meth:`switch_to_deploy`): without autograd, quantise in one buffer
    #: (``fast``), and that buffer is the input itself (``inplace``: set by the block that
    #: owns the neuron, through :func:`overwrite_input_when_deployed`, where nothing else
    #: reads the input)
    fast = False
    inplace = False

    def __init__(self, max_value=4, norm=4.0, T=1, eval_max_value=None):
        super().__init__()
        self.max_value = int(max_value)
        self.norm = float(norm)
        self.T = T
        self.eval_max_value = None if eval_max_value is None else int(eval_max_value)

    def forward(self, x):
        top = (self.max_value if self.training or self.eval_max_value is None
               else self.eval_max_value)
        if self.fast and not (x.requires_grad and torch.is_grad_enabled()):
            return quantize_no_grad(x, top, self.norm, self.inplace)
        s = quantize(x, top, self.norm)
        if s.requires_grad and top <= 255:
            _tag_spikes(s, self.norm)
        return s

    def switch_to_deploy(self):
        """Inference form: without autograd, clamp, round and scale in one buffer."""
        self.fast = True

    def extra_repr(self):
        extra = '' if self.eval_max_value is None else f', eval_max_value={self.eval_max_value}'
        return f'max_value={self.max_value}, norm={self.norm}{extra}'


class _MultiStepNeuron(nn.Module):
    """Runs a spikingjelly neuron in multi-step mode on time-folded ``[T*B, ...]`` input.

    Subclasses set ``max_value``, the largest spike count D (outputs are ``count / norm``),
    so ``compact_spike_storage()`` can keep their spikes as uint8 counts too."""

    stateful = True
    max_value = 1

    def __init__(self, node, T, norm=1.0):
        super().__init__()
        self.node = node
        self.T = int(T)
        self.norm = float(norm)

    def forward(self, x):
        if x.shape[0] % self.T:
            raise ValueError(f'{type(self).__name__}: leading dim {x.shape[0]} is not a '
                             f'multiple of T={self.T}; fold time into the batch as [T*B, ...]')
        self.node.reset()  # each forward starts from rest: no membrane carried across batches
        seq = x.reshape(self.T, x.shape[0] // self.T, *x.shape[1:])
        out = self.node(seq).reshape(x.shape)
        self.node.reset()  # drop the graph-holding state once the sequence is done
        out = out / self.norm if self.norm != 1.0 else out
        if out.requires_grad and self.max_value <= 255:
            _tag_spikes(out, self.norm)
        return out

    def extra_repr(self):
        return f'T={self.T}, norm={self.norm}'


@_register
class IntegerLIF(_MultiStepNeuron):
    """spikingjelly's I-LIF (integer firing, soft reset) divided by ``norm``.

    At T = 1 with zero initial membrane it equals :class:`MultiSpikeQuantizer`.
    ``tau=4/3`` is the decay 0.25 of the I-LIF authors' code.
    """

    def __init__(self, T=1, max_value=4, norm=4.0, tau=4.0 / 3.0, v_threshold=1.0,
                 detach_reset=False):
        node = sj_neuron.ILIFNode(
            tau=tau, v_threshold=v_threshold,
            surrogate_function=sj_surrogate.MultiLevelSpikeCount(int(max_value)),
            detach_reset=detach_reset, step_mode='m')
        super().__init__(node, T, norm)
        self.max_value = int(max_value)  # the largest spike count D (read by the energy report)

    def forward(self, x):
        if x.shape[0] % self.T:
            raise ValueError(f'{type(self).__name__}: leading dim {x.shape[0]} is not a '
                             f'multiple of T={self.T}; fold time into the batch as [T*B, ...]')
        node = self.node
        decay = 1.0 - 1.0 / node.tau
        if not (x.requires_grad and torch.is_grad_enabled()):
            # inference: the same steps without the window, in preallocated buffers, in
            # place of spikingjelly's per-step loop, which allocates every intermediate
            x_seq = x.reshape(self.T, x.shape[0] // self.T, *x.shape[1:])
            return ilif_steps(x_seq, decay, float(node.v_threshold), float(self.max_value),
                               self.norm).reshape(x.shape)
        # training: spikingjelly's dynamics, but what autograd keeps is a 1-byte window mask
        # per step (instead of the float32 charged membrane), and the division by ``norm``
        # runs inside (no second float32 buffer); the next conv keeps the spikes as uint8
        s = LeanILIF.apply(
            x.reshape(self.T, x.shape[0] // self.T, *x.shape[1:]), decay,
            float(node.v_threshold), float(self.max_value),
            float(node.surrogate_function.grad_min), float(node.surrogate_function.grad_max),
            bool(node.detach_reset), self.norm).reshape(x.shape)
        if self.max_value <= 255:
            _tag_spikes(s, self.norm)
        return s


@_register
class BinaryLIF(_MultiStepNeuron):
    """spikingjelly's binary LIF neuron (hard reset to 0, sigmoid surrogate)."""

    def __init__(self, T=1, tau=2.0, v_threshold=1.0, decay_input=True, detach_reset=True):
        node = sj_neuron.LIFNode(tau=tau, v_threshold=v_threshold, decay_input=decay_input,
                                 detach_reset=detach_reset, step_mode='m')
        super().__init__(node, T, norm=1.0)
        self.max_value = 1  # binary spikes


class MultiStepLIF(sj_neuron.LIFNode):
    """The time-first spiking transformers' LIF (Spikformer, SDT v1, QKFormer): the reference's ``MultiStepLIFNode`` on spikingjelly's torch path.

    ``H = V + (X[t] - V) / tau``; spike where ``H >= v_threshold``; hard reset to 0. The input
    is ``[T, ...]`` and the membrane steps along axis 0. The state is reset before every
    forward (nothing leaks from one batch into the next) and after it (no graph kept alive).

    Args:
        v_threshold (float): 1.0, or 0.5 for the attention neurons of the references.
        tau (float): membrane time constant (2.0 in all three references).

    The references run spikingjelly 0.0.0.0.14's 'cupy' kernel (CUDA fp32/fp16 only);
    spikingjelly 2.0's torch path computes the same numbers on CPU and GPU, in any float
    dtype (``shared/docs/snn_transformers.md`` section 0).
    """

    def __init__(self, v_threshold=1.0, tau=2.0):
        super().__init__(tau=float(tau), decay_input=True, v_threshold=v_threshold, v_reset=0.0,
                         surrogate_function=sj_surrogate.Sigmoid(alpha=4.0),
                         detach_reset=True, step_mode='m')

    def forward(self, x):
        self.reset()
        out = super().forward(x)
        self.reset()
        return out


@_register
class ReLUTwin(nn.Module):
    """Not a neuron: ReLU in place of the spiking neuron, to build the non-spiking twin of a
    model and measure what spiking costs. With ``multistep=True`` a ``T > 1`` model runs T
    real steps like it would with I-LIF/LIF (ReLU has no state, but the cost is comparable)."""

    def __init__(self, T=1, multistep=False):
        super().__init__()
        self.T = T
        self.stateful = bool(multistep)

    def forward(self, x):
        return torch.relu(x)


DEFAULT_NEURON = dict(type='MultiSpikeQuantizer', max_value=4, norm=4.0)


def build_neuron(cfg=None, T=1):
    """Build one neuron from ``cfg`` (default: the reference quantiser) for ``T`` steps."""
    cfg = dict(DEFAULT_NEURON if cfg is None else cfg)
    if 'type' not in cfg:
        raise KeyError(f'neuron_cfg needs a "type"; known: {sorted(NEURONS.module_dict)}')
    if cfg['type'] not in NEURONS.module_dict:
        raise KeyError(f'unknown neuron type {cfg["type"]!r}; known: {sorted(NEURONS.module_dict)}')
    cfg.setdefault('T', T)
    # build the class directly: NEURONS.build would first search the caller's default
    # scope (mmdet/mmseg) and log a warning for every neuron of every model.
    cls = NEURONS.module_dict[cfg.pop('type')]
    if cls is not ReLUTwin:
        cfg.pop('multistep', None)  # only the ReLU twin takes it; is_stateful() reads it
    return cls(**cfg)


def is_stateful(neuron_cfg):
    """Whether a model with ``neuron_cfg`` must run T real time steps (neurons with membrane
    state; or a ReLU twin built with ``multistep=True``)."""
    cfg = DEFAULT_NEURON if neuron_cfg is None else neuron_cfg
    if 'multistep' in cfg:
        return bool(cfg['multistep'])
    return bool(getattr(NEURONS.module_dict.get(cfg['type']), 'stateful', False))


class _MultiSpikeFunction(torch.autograd.Function):
    """``round(clamp(u, 0, D)) / norm``; backward ``g / norm`` where ``0 <= u <= D``.

    With ``counts=True`` it also returns the integer counts as uint8 (not differentiable), made
    from the rounded buffer in one pass, for :func:`compact_spike_storage` to keep instead of
    packing the spikes again (three passes) when a conv saves them."""

    @staticmethod
    def forward(ctx, u, max_value, norm, counts=False):
        out = torch.clamp(u, 0, max_value)
        if ctx.needs_input_grad[0]:
            # inside the window exactly where clamping changed nothing (NaN: outside, as for
            # ``0 <= u <= D``): one comparison, where ``ge``, ``le`` and ``and`` took three
            # passes and two temporaries. A bool mask: a quarter of saving u itself
            ctx.save_for_backward(out == u)
        ctx.scale = 1.0 / norm
        out.round_()
        packed = out.to(torch.uint8) if counts else None
        if norm != 1.0:
            out.mul_(ctx.scale)
        if packed is None:
            return out
        ctx.mark_non_differentiable(packed)
        return out, packed

    @staticmethod
    def backward(ctx, grad, *unused):
        (mask,) = ctx.saved_tensors
        # the float mask is the one new tensor: the product and the scale go into it (same
        # numbers: a product does not depend on the order of its factors). ``grad *
        # mask.to(...)`` made two, and each new tensor of a large map is paid in page faults
        # where the freed memory went back to the OS (a 62 MB map: 95 ms against 58 ms on
        # an AMD EPYC [avx2]); torch.where(mask, grad, 0) was slower still
        try:
            grad = mask.to(grad.dtype).mul_(grad)
        except RuntimeError:
            # vmap (the ST-ERF's batched gradients) refuses to write a batched grad in place
            # into the unbatched mask: a new tensor there
            grad = mask.to(grad.dtype) * grad
        return (grad.mul_(ctx.scale) if ctx.scale != 1.0 else grad), None, None, None


#: depth of :func:`compact_spike_storage` contexts entered (the quantiser makes its uint8
#: counts only inside one, where they are kept)
_compact_depth = 0


def _keep_counts(s, counts):
    """Let later packings of the spikes ``s`` reuse their uint8 ``counts`` (while ``s`` is
    not changed in place)."""
    s._mmsnn_spike_counts = (counts, s._version)


def _pack_spikes(t):
    norm = getattr(t, '_mmsnn_spike_norm', None)
    if norm is None:
        return t
    counts = getattr(t, '_mmsnn_spike_counts', None)
    if counts is not None and counts[1] == t._version:  # made with the spikes, unchanged since
        return counts[0], norm, t.dtype
    # spikes are k / norm with integer k in [0, max_value]: uint8 holds them exactly. With
    # norm 1 they are the integers themselves (the cast is exact); else k / norm * norm may
    # miss k by a rounding error. One float temporary at most: the two that round(t * norm)
    # made were the peak of a checkpointed T = 4 neck + RPN head alone (dispatcher counts)
    if norm == 1.0:
        return t.to(torch.uint8), norm, t.dtype
    return torch.mul(t, norm).round_().to(torch.uint8), norm, t.dtype


def _unpack_spikes(packed):
    if isinstance(packed, torch.Tensor):
        return packed
    counts, norm, dtype = packed
    return counts.to(dtype).div_(norm)


#: the most bytes of float spikes that a conv of spikes reads at once in training: a larger
#: input runs in slices of its batch (T * B samples), at least one sample each. oneDNN copies
#: a plain (NCHW) tensor into its blocked layout before it convolves: in the backward pass the
#: spikes and the output gradient both, each as large as the tensor. At T = 4 and COCO size
#: those copies of a 256-channel P2 map (2 x 262 MiB) were the peak of the checkpointed Mask
#: R-CNN step, above every live tensor (per-op peak RSS, ``VmHWM``); in slices they are a
#: slice's size. A slice of the batch changes no output element and no input gradient; the
#: weight and bias gradients are the sum of the slices' sums (rounding-level differences
#: from one sum over the batch).
CONV_SLICE_BYTES = 64 * 2**20


def _batch_slices(s):
    """Slices of the batch dimension of ``s`` (one slice: the whole batch)."""
    if s.shape[0] <= 1:
        return [slice(None)]
    step = max(1, CONV_SLICE_BYTES // max(s[0].numel() * s.element_size(), 1))
    return [slice(i, i + step) for i in range(0, s.shape[0], step)]


class _ConvOfSpikes(torch.autograd.Function):
    """``F.conv2d(s, weight, bias, ...)`` of spikes ``s`` that keeps ``s`` for the backward
    pass as uint8 counts, without saved-tensor hooks. The backward is autograd's own
    (``aten.convolution_backward`` with the same arguments), on the spikes rebuilt exactly.
    A large input runs in batch slices, forward and backward (:data:`CONV_SLICE_BYTES`)."""

    @staticmethod
    def forward(ctx, s, weight, bias, stride, padding, dilation, groups):
        counts, ctx.norm, ctx.dtype = _pack_spikes(s)
        if getattr(s, '_mmsnn_spike_counts', None) is None:
            # another conv of the same spikes (the RPN head's two predictors) keeps these too
            _keep_counts(s, counts)
        ctx.conv = (stride, padding, dilation, groups, None if bias is None else list(bias.shape))
        ctx.slices = _batch_slices(s)
        ctx.save_for_backward(counts, weight)
        if len(ctx.slices) == 1:
            return F.conv2d(s, weight, bias, stride, padding, dilation, groups)
        out = None
        for part in ctx.slices:
            y = F.conv2d(s[part], weight, bias, stride, padding, dilation, groups)
            if out is None:  # the first slice tells the output's shape
                out = y.new_empty((s.shape[0], *y.shape[1:]))
            out[part] = y
            del y
        return out

    @staticmethod
    def backward(ctx, grad):
        counts, weight = ctx.saved_tensors
        stride, padding, dilation, groups, bias_shape = ctx.conv
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                  bias_shape is not None and ctx.needs_input_grad[2]]

        def backward_of(part):
            return torch.ops.aten.convolution_backward(
                grad[part], _unpack_spikes((counts[part], ctx.norm, ctx.dtype)), weight,
                bias_shape, stride, padding, dilation, False, [0] * len(stride), groups, wanted)

        if len(ctx.slices) == 1:
            grad_s, grad_w, grad_b = backward_of(slice(None))
            return grad_s, grad_w, grad_b, None, None, None, None
        grad_s = counts.new_empty(counts.shape, dtype=ctx.dtype) if wanted[0] else None
        grad_w = grad_b = None
        for part in ctx.slices:
            gs, gw, gb = backward_of(part)
            if grad_s is not None:
                grad_s[part] = gs
            del gs
            if gw is not None:
                grad_w = gw if grad_w is None else grad_w.add_(gw)
            if gb is not None:
                grad_b = gb if grad_b is None else grad_b.add_(gb)
        return grad_s, grad_w, grad_b, None, None, None, None


def _has_forward_hooks(module):
    return bool(module._forward_hooks or module._forward_pre_hooks
                or _torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks)


def conv_of_spikes(conv, s):
    """``conv(s)`` (an ``nn.Conv2d``) that keeps a neuron's spikes ``s`` for the backward pass
    as uint8 counts where they would be kept as float32: in training, outside
    :func:`compact_spike_storage` -- also inside a checkpoint's recompute (``with_cp``), where
    saved-tensor hooks cannot apply (the neck's recompute at P2 was the peak of the
    checkpointed T = 4 Mask R-CNN step). Elsewhere the plain ``conv(s)``, and so wherever
    forward hooks watch the conv (the energy counter's, a user's): they see the usual call."""
    if (getattr(s, '_mmsnn_spike_norm', None) is None or type(conv) is not nn.Conv2d
            or not (s.requires_grad and torch.is_grad_enabled()) or _compact_depth
            or conv.padding_mode != 'zeros' or isinstance(conv.padding, str)
            or _has_forward_hooks(conv) or autocast_on(s.device.type)):
        return conv(s)
    return _ConvOfSpikes.apply(s, conv.weight, conv.bias, conv.stride, conv.padding,
                               conv.dilation, conv.groups)


def compact_spike_storage():
    """Context manager: tensors that autograd saves for the backward pass and that are
    outputs of a neuron (the quantiser, I-LIF, LIF; the inputs of most convs) are kept as
    uint8 spike counts instead of float32 -- exact, and a quarter of the memory. Everything
    else is saved as usual."""
    return _CompactSpikeStorage()


class _CompactSpikeStorage(torch.autograd.graph.saved_tensors_hooks):
    """``saved_tensors_hooks(_pack_spikes, _unpack_spikes)`` that counts how deep it is nested
    (:data:`_compact_depth`)."""

    def __init__(self):
        super().__init__(_pack_spikes, _unpack_spikes)

    def __enter__(self):
        global _compact_depth
        super().__enter__()
        _compact_depth += 1

    def __exit__(self, *exc):
        global _compact_depth
        _compact_depth -= 1
        super().__exit__(*exc)


def overwrite_input_when_deployed(*neurons):
    """Called by a block's ``switch_to_deploy`` for its neurons whose input tensor is made only
    for them (the output of the conv / BN / linear just before them, read by nothing else):
    in deploy mode a quantiser may then write its spikes into that tensor. A neuron whose input
    is the block input or a residual stream must not be named (``tests/test_deploy/test_convert_for_inference.py``
    compares every tap against the unconverted model)."""
    for neuron in neurons:
        if isinstance(neuron, MultiSpikeQuantizer):
            neuron.inplace = True


def quantize_no_grad(x, max_value=4, norm=4.0, inplace=False):
    """:func:`quantize` without autograd: clamp, round and scale run on one buffer -- ``x``
    itself when ``inplace`` (then ``x`` is overwritten), else one copy. Same numbers."""
    out = x.clamp_(0, max_value) if inplace else torch.clamp(x, 0, max_value)
    out.round_()
    return out.mul_(1.0 / norm) if norm != 1.0 else out


def quantize(x, max_value=4, norm=4.0):
    """Functional form of :class:`MultiSpikeQuantizer` for heads that need no module."""
    max_value, norm = int(max_value), float(norm)
    if (not torch.compiler.is_compiling() and _compact_depth and max_value <= 255
            and x.requires_grad and torch.is_grad_enabled()):
        # inside compact_spike_storage(): the uint8 counts come with the spikes, for the
        # conv that saves them (a compiled graph saves what AOTAutograd chooses instead)
        s, counts = _MultiSpikeFunction.apply(x, max_value, norm, True)
        _keep_counts(s, counts)
        return s
    return _MultiSpikeFunction.apply(x, max_value, norm)


__all__ = ['NEURONS', 'NEURON_ALIASES', 'MultiSpikeQuantizer', 'IntegerLIF', 'BinaryLIF', 'ReLUTwin', 'MultiStepLIF', 'build_neuron',
           'is_stateful', 'quantize', 'quantize_no_grad', 'overwrite_input_when_deployed', 'compact_spike_storage', 'conv_of_spikes',
           'DEFAULT_NEURON']
