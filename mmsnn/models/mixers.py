"""The paper's two early-stage channel mixers: MLPixer and SRB (splash and reconstruct).

Both replace the second half of the four early conv blocks (taps 0-2); the first half, a
7x7 inverted separable conv, stays.

Token layout -- the point that matters:
The released code applies ``nn.Linear`` to ``x.reshape(B, H*W, C)`` of a contiguous
``[B, C, H, W]`` map, *without a permute*. A "token" is therefore a run of C consecutive
elements of the channel-major (c, h, w) raster: C horizontally neighbouring pixels of one
channel (runs straddle a channel boundary when C does not divide H*W). The Linear mixes space,
not channels, and its output run m lands at flat positions [m*rC, (m+1)*rC) of the
``rC x H x W`` map -- far from where it came from. That is what gives the early stages a
global ERF, and it is what the published weights were trained with, so it is the default
(``token_layout='raster'``).
``token_layout='pixel'`` is the channel MLP the paper's prose suggests (each pixel's channel
vector, i.e. a 1x1 conv). It has the same parameter shapes but is *not* weight-compatible:
a raster-trained checkpoint loaded into it computes something else.
"""
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_init

from .layers import InvertedSepConv, ResidualBranches, drop_path_or_identity
from .neurons import overwrite_input_when_deployed

TOKEN_LAYOUTS = ('raster', 'pixel')


def tokens_to_linear(linear, x, layout):
    """Apply ``linear`` to the tokens of ``x`` [B, C, H, W]; returns [B, C_out, H, W]."""
    B, C, H, W = x.shape
    if layout == 'raster':
        # raw reshape of the contiguous map: token m = flat elements [m*C, (m+1)*C). Through
        # the flat [B, C*H*W] view: a direct [B, C, H, W] <-> [B, H*W, C] reshape makes
        # torch.compile guard on how C divides H*W, i.e. recompile for most new input sizes
        y = linear(x.contiguous().flatten(1).view(B, H * W, C))
        return y.flatten(1).view(B, linear.out_features, H, W)
    y = linear(x.permute(0, 2, 3, 1))  # each pixel's channel vector
    return y.permute(0, 3, 1, 2)


def _bias_free_linear(in_features, out_features):
    fc = nn.Linear(in_features, out_features, bias=False)
    trunc_normal_init(fc, std=0.02)
    return fc


class _EarlyMixerBlock(ResidualBranches):
    """What MLPixer and SRB share: ``x = x + SepConv7(x)``, then ``x = x + mix(x)`` whose
    first step, ``splash``, is ``dropout(fc1(spike1(x)))`` over tokens (C -> rC);
    subclasses define the rest of ``mix`` after ``spike2``."""

    branch_names = ('Conv', 'mix')

    def __init__(self, dim, mlp_ratio, neuron, drop_rate, drop_path, token_layout):
        super().__init__()
        if token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f'token_layout must be one of {TOKEN_LAYOUTS}, got {token_layout!r}')
        self.token_layout = token_layout
        self.hidden = int(mlp_ratio * dim)
        self.Conv = InvertedSepConv(dim, kernel_size=7, neuron=neuron)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.drop_path = drop_path_or_identity(drop_path)
        self.spike1 = neuron()
        self.fc1 = _bias_free_linear(dim, self.hidden)
        self.spike2 = neuron()

    def switch_to_deploy(self):
        self.inplace_residual = True
        overwrite_input_when_deployed(self.spike2)  # dropout(fc1(...)): made for it only

    def splash(self, x):
        return self.drop(tokens_to_linear(self.fc1, self.spike1(x), self.token_layout))


class MLPixerMixer(_EarlyMixerBlock):
    """MLPixer: two bias-free Linears over raster tokens,
    ``fc2(spike(fc1(spike(x))))`` with dropout after each Linear."""

    def __init__(self, dim, mlp_ratio=4, neuron=None, drop_rate=0.0, drop_path=0.0,
                 token_layout='raster'):
        super().__init__(dim, mlp_ratio, neuron, drop_rate, drop_path, token_layout)
        self.fc2 = _bias_free_linear(self.hidden, dim)

    def mix(self, x):
        y = self.splash(x)
        return self.drop(tokens_to_linear(self.fc2, self.spike2(y), self.token_layout))


class SplashReconstructMixer(_EarlyMixerBlock):
    """SRB: *splash* each token run to a distant place of an r-times wider map with a
    bias-free Linear, then *reconstruct* locally with spike -> conv3x3 (rC -> C) -> BN."""

    def __init__(self, dim, mlp_ratio=4, neuron=None, drop_rate=0.0, drop_path=0.0,
                 token_layout='raster'):
        super().__init__(dim, mlp_ratio, neuron, drop_rate, drop_path, token_layout)
        self.conv2 = nn.Conv2d(self.hidden, dim, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def mix(self, x):
        return self.bn2(self.conv2(self.spike2(self.splash(x))))
