"""Building blocks of the Meta-SDT (Spike-Driven Transformer v3) backbone.

Attribute names follow the released reference code (``pwconv1``, ``q_conv``, ``fc1_bn`` ...)
so a reference checkpoint loads with only a prefix change (see ``reference_conversion.py``).
All blocks take time-folded tensors ``[T*B, C, H, W]``; only the neurons know about T.
``neuron`` arguments are zero-argument factories returning a fresh neuron module.
"""
import torch
import torch.nn as nn

from ..ops.depthwise_conv import DepthwiseConv2d, depthwise_applies
from .activation_checkpoint import checkpoint, wants_checkpoint
from .neurons import overwrite_input_when_deployed


def residual_add(x, branch, inplace=False):
    """``x + branch``. With ``inplace`` (the blocks' deploy mode, ``switch_to_deploy``) and no
    autograd, the sum is written into ``branch`` -- a tensor the block has just made and nobody
    else reads -- instead of a new one: the same numbers, since float addition commutes."""
    if inplace and not torch.is_grad_enabled():
        return branch.add_(x)
    return x + branch


def conv_bn(in_ch, out_ch, kernel_size=1, stride=1, padding=0, groups=1, bias=False):
    """Conv + BN in an ``nn.Sequential`` (keys ``.0.weight`` / ``.1.weight`` as in the reference).
    A depthwise conv is a :class:`~mmsnn.ops.DepthwiseConv2d` (an ``nn.Conv2d`` with a faster
    weight gradient on the CPU)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=bias)
    if depthwise_applies(conv):
        # the same module, parameters and state dict: only the backward differs. Built once,
        # so a seeded model draws the initialisation a plain nn.Conv2d would
        conv.__class__ = DepthwiseConv2d
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


class SpikeDownsample(nn.Module):
    """spike -> conv (bias) -> BN. The stem (``first=True``) has no spike before the conv,
    because its input is the analogue image (direct encoding)."""

    def __init__(self, in_ch, out_ch, kernel_size=3, stride=2, padding=1, first=False,
                 neuron=None):
        super().__init__()
        self.encode_conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, bias=True)
        self.encode_bn = nn.BatchNorm2d(out_ch)
        if not first:
            self.encode_spike = neuron()

    def forward(self, x):
        if hasattr(self, 'encode_spike'):
            x = self.encode_spike(x)
        return self.encode_bn(self.encode_conv(x))


class InvertedSepConv(nn.Module):
    """Reference ``SepConv_Spike``: spike -> pw 1x1 (x2) -> BN -> spike -> dw kxk -> BN ->
    spike -> pw 1x1 -> BN. No biases."""

    def __init__(self, dim, kernel_size=7, expansion=2, neuron=None):
        super().__init__()
        hidden = int(expansion * dim)
        self.spike1 = neuron()
        self.pwconv1 = conv_bn(dim, hidden, 1)
        self.spike2 = neuron()
        self.dwconv = conv_bn(hidden, hidden, kernel_size, padding=kernel_size // 2,
                              groups=hidden)
        self.spike3 = neuron()
        self.pwconv2 = conv_bn(hidden, dim, 1)

    def switch_to_deploy(self):
        overwrite_input_when_deployed(self.spike2, self.spike3)  # BN outputs, read by them only

    def forward(self, x):
        x = self.pwconv1(self.spike1(x))
        x = self.dwconv(self.spike2(x))
        return self.pwconv2(self.spike3(x))


class TimeFoldedDropPath(nn.Module):
    """Stochastic depth on time-folded ``[T*B, ...]`` tensors: one keep/drop draw per sample,
    shared by all its T steps (mmcv's ``DropPath`` draws per row, i.e. per step and sample,
    so a sample's branch would vanish at one step and come back at the next).

    ``steps`` (T of the folded batch) is set by the backbone before each forward, since the
    number of real steps depends on the input (see ``MetaSDT._forward``).
    """

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.steps = 1

    def forward(self, x):
        if not self.training or self.drop_prob == 0.0:
            return x
        if x.shape[0] % self.steps:
            raise ValueError(f'TimeFoldedDropPath: leading dim {x.shape[0]} is not a multiple '
                             f'of steps={self.steps}')
        keep = 1.0 - self.drop_prob
        B = x.shape[0] // self.steps
        mask = x.new_empty((1, B) + (1,) * (x.dim() - 1)).bernoulli_(keep).div_(keep)
        return (x.reshape(self.steps, B, *x.shape[1:]) * mask).reshape(x.shape)

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'


def drop_path_or_identity(drop_prob):
    return TimeFoldedDropPath(drop_prob) if drop_prob > 0 else nn.Identity()


class ResidualBranches(nn.Module):
    """A block that is a chain of residual branches: ``x = x + drop_path(branch(x))`` for each
    of ``branch_names`` (its submodules or methods) in turn.

    ``with_cp`` (set by the backbone, ``MetaSDT(with_cp=True)``): activation checkpointing
    of each branch on its own, not of the block as a whole. The backward then recomputes one
    branch at a time: with T steps folded into the batch, an early block (4x hidden channels
    at stride 2) recomputed whole kept both branches' activations alive at once, which was
    the peak of the checkpointed train step. Same numbers as without: outputs, gradients
    and BN running statistics (checkpoint replays the drop-path draws; each neuron runs its T
    steps from a reset membrane within a branch; the recompute leaves the buffers as they were).
    """

    branch_names = ()
    with_cp = False
    inplace_residual = False  # deploy mode (switch_to_deploy): see residual_add

    def forward(self, x):
        for name in self.branch_names:
            # the branch's output is not bound to a name: it is freed right after the sum
            x = residual_add(x, self._residual(getattr(self, name), x), self.inplace_residual)
        return x

    def _residual(self, branch, x):
        if wants_checkpoint(self.with_cp, [x]):
            return checkpoint(self, self._dropped_branch, branch, x)
        return self._dropped_branch(branch, x)

    def _dropped_branch(self, branch, x):
        return self.drop_path(branch(x))


class SpikeConvBlock(ResidualBranches):
    """The baseline early-stage block ("conv" mixer):
    ``x += SepConv7(x)``; ``x += BN2(Conv3x3(rC->C)(spike(BN1(Conv3x3(C->rC)(spike(x))))))``."""

    branch_names = ('Conv', 'channel_mix')

    def __init__(self, dim, mlp_ratio=4, neuron=None, drop_path=0.0, **unused):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.Conv = InvertedSepConv(dim, kernel_size=7, neuron=neuron)
        self.spike1 = neuron()
        self.conv1 = nn.Conv2d(dim, hidden, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.spike2 = neuron()
        self.conv2 = nn.Conv2d(hidden, dim, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)
        self.drop_path = drop_path_or_identity(drop_path)

    def switch_to_deploy(self):
        self.inplace_residual = True
        overwrite_input_when_deployed(self.spike2)  # bn1's output

    def channel_mix(self, x):
        x = self.bn1(self.conv1(self.spike1(x)))
        return self.bn2(self.conv2(self.spike2(x)))


class MatMul(nn.Module):
    """``a @ b`` as a (parameter-free) module: gives the attention's two products a name and a
    hook point, so ``mmsnn.analysis.energy`` can count them like the conv layers. No state-dict
    keys, same numbers as a bare ``@``."""

    def forward(self, a, b):
        return a @ b


class SpikeDrivenAttention(nn.Module):
    """Spike-driven self-attention (no softmax) with 8 heads and a 4x wide value.

    ``y = q (k^T v) * 2 / sqrt(d)``: without softmax the product is associative, so computing
    ``k^T v`` first needs O(N d^2) memory instead of the O(N^2) of ``(q k^T) v``. Both orders
    give the same numbers (to float64 rounding); ``attn_order='quadratic'`` keeps the
    reference order for benchmarks. The scale is applied to the middle product (``k^T v``,
    or ``q k^T``) before the last matmul, not to ``y``: unscaled, ``y`` grows with the token
    count (about 1e5 at 800x1216) and overflows fp16 under mixed precision.
    The products run in named :class:`MatMul` modules: ``kv`` (``k^T v``) and ``qkv``
    (``q (k^T v)``); in the quadratic order ``qk`` (``q k^T``) and ``qkv`` (``(q k^T) v``).
    """

    def __init__(self, dim, num_heads=8, value_ratio=4, neuron=None, attn_order='linear'):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'attention dim {dim} is not divisible by num_heads={num_heads}')
        if attn_order not in ('linear', 'quadratic'):
            raise ValueError(f"attn_order must be 'linear' or 'quadratic', got {attn_order!r}")
        self.num_heads = num_heads
        self.value_ratio = value_ratio
        self.attn_order = attn_order
        self.scale = 2 * (dim // num_heads) ** -0.5  # the reference doubles the usual scale
        self.head_spike = neuron()
        self.q_conv = conv_bn(dim, dim)
        self.q_spike = neuron()
        self.k_conv = conv_bn(dim, dim)
        self.k_spike = neuron()
        self.v_conv = conv_bn(dim, value_ratio * dim)
        self.v_spike = neuron()
        self.talking_heads = neuron()
        self.proj_conv = conv_bn(value_ratio * dim, dim)
        if attn_order == 'linear':
            self.kv = MatMul()
        else:
            self.qk = MatMul()
        self.qkv = MatMul()

    #: deploy mode (:meth:`switch_to_deploy`): compute the last product transposed, ``y^T = (k^T v)^T
    #: q^T`` (or ``v^T (q k^T)^T``), whose ``[B, h, dv, N]`` result merges the heads as a view;
    #: ``y`` itself is ``[B, h, N, dv]`` and merging its heads copies it (10% of the s
    #: backbone's fused inference at 800x1216). The same products, summed by BLAS.
    transposed_product = False

    def switch_to_deploy(self):
        self.transposed_product = True
        # the conv+BN outputs and the product are made for these neurons only
        overwrite_input_when_deployed(self.q_spike, self.k_spike, self.v_spike,
                                      self.talking_heads)

    def _heads(self, x):
        # [B, h*d, N] -> [B, h, N, d]; channel c belongs to head c // d
        B, C, N = x.shape
        return x.reshape(B, self.num_heads, C // self.num_heads, N).transpose(-1, -2)

    def forward(self, x):
        B, C, H, W = x.shape
        x = self.head_spike(x)
        q = self._heads(self.q_spike(self.q_conv(x)).flatten(2))
        k = self._heads(self.k_spike(self.k_conv(x)).flatten(2))
        v = self._heads(self.v_spike(self.v_conv(x)).flatten(2))
        # The middle product is scaled in place: q, k, v stay the (compactable) spikes that
        # autograd saves, and the O(N^2) order needs no second N x N buffer.
        if self.attn_order == 'linear':
            left, right = q, self.kv(k.transpose(-2, -1), v).mul_(self.scale)
        else:
            left, right = self.qk(q, k.transpose(-2, -1)).mul_(self.scale), v
        if self.transposed_product:  # y^T = right^T left^T: [B, h, dv, N]
            y = self.qkv(right.transpose(-2, -1), left.transpose(-2, -1))
        else:
            y = self.qkv(left, right).transpose(-1, -2)
        y = y.reshape(B, self.value_ratio * C, H, W)  # merge heads
        return self.proj_conv(self.talking_heads(y))


class SpikeMLP(nn.Module):
    """Token MLP on ``[B, C, N]``: spike -> conv1d (bias) -> BN1d -> spike -> conv1d -> BN1d."""

    def __init__(self, dim, mlp_ratio=4, neuron=None):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1_spike = neuron()
        self.fc1_conv = nn.Conv1d(dim, hidden, 1, bias=True)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2_spike = neuron()
        self.fc2_conv = nn.Conv1d(hidden, dim, 1, bias=True)
        self.fc2_bn = nn.BatchNorm1d(dim)

    def switch_to_deploy(self):
        overwrite_input_when_deployed(self.fc2_spike)  # fc1_bn's output

    def forward(self, x):
        B, C, H, W = x.shape
        x = x.flatten(2)
        x = self.fc1_bn(self.fc1_conv(self.fc1_spike(x)))
        x = self.fc2_bn(self.fc2_conv(self.fc2_spike(x)))
        return x.reshape(B, C, H, W)


class SpikeTransformerBlock(ResidualBranches):
    """``x += SepConv3(x)``; ``x += Attn(x)``; ``x += MLP(x)``."""

    branch_names = ('conv', 'attn', 'mlp')

    def __init__(self, dim, mlp_ratio=4, num_heads=8, neuron=None, drop_path=0.0,
                 attn_order='linear'):
        super().__init__()
        self.conv = InvertedSepConv(dim, kernel_size=3, neuron=neuron)
        self.attn = SpikeDrivenAttention(dim, num_heads, neuron=neuron, attn_order=attn_order)
        self.mlp = SpikeMLP(dim, mlp_ratio, neuron=neuron)
        self.drop_path = drop_path_or_identity(drop_path)

    def switch_to_deploy(self):
        self.inplace_residual = True
