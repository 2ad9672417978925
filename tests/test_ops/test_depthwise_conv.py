"""The depthwise convolution whose weight gradient is a depthwise convolution
(``mmsnn/ops/depthwise_conv.py``): its gradients are torch's, in float64 to rounding and in
float32 within float32's own error, and the models use it where it applies."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsnn.ops import DepthwiseConv2d, depthwise_applies, depthwise_conv2d


def _torch_grads(x, weight, bias, padding, grad):
    """Gradients of torch's own ``F.conv2d`` (the oracle: not the code under test)."""
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    bias = None if bias is None else bias.detach().requires_grad_()
    F.conv2d(x, weight, bias, 1, padding, 1, weight.shape[0]).backward(grad)
    return x.grad, weight.grad, None if bias is None else bias.grad


def _grads(x, weight, bias, padding, grad):
    """Gradients of :func:`depthwise_conv2d` (the code under test)."""
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    bias = None if bias is None else bias.detach().requires_grad_()
    y = depthwise_conv2d(x, weight, bias, padding)
    assert type(y.grad_fn).__name__ == '_DepthwiseConv2dFunctionBackward'
    y.backward(grad)
    return x.grad, weight.grad, None if bias is None else bias.grad


CASES = [  # (batch, channels, H, W, kernel, padding, bias)
    (1, 8, 23, 31, (7, 7), (3, 3), False),   # the SepConv's shape
    (3, 5, 12, 9, (7, 7), (3, 3), True),     # T * B > 1 folded in the batch
    (2, 4, 10, 13, (3, 5), (1, 2), True),    # non-square kernel and padding
    (1, 6, 11, 11, (5, 5), (0, 0), False),   # no padding: a smaller output
    (2, 3, 8, 8, (3, 3), (2, 2), False),     # more padding than the kernel's half
]


@pytest.mark.parametrize('n,c,h,w,kernel,padding,bias', CASES)
def test_gradients_equal_torchs_in_float64(n, c, h, w, kernel, padding, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(c, 1, *kernel, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64) if bias else None
    out_shape = F.conv2d(x, weight, None, 1, padding, 1, c).shape
    grad = torch.randn(out_shape, generator=g, dtype=torch.float64)
    ours = _grads(x, weight, b, padding, grad)
    theirs = _torch_grads(x, weight, b, padding, grad)
    for a, t in zip(ours, theirs):
        if t is None:
            assert a is None
            continue
        assert a.shape == t.shape
        torch.testing.assert_close(a, t, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: depthwise_conv2d(x, w, b, (1, 1)),
                                    (x, w, b))


def test_float32_weight_gradient_within_float32_error():
    """At the Meta-SDT stage-1 shape's width (large sums per weight), the float32 weight
    gradient is as close to the float64 one as float32 allows: within 1e-4 of its largest
    entry (float32's epsilon is 1.2e-7; sums of ~40 000 terms)."""
    g = torch.Generator().manual_seed(2)
    x64 = torch.randint(0, 5, (1, 16, 160, 240), generator=g).double() / 4  # spikes k / 4
    grad64 = torch.randn(1, 16, 160, 240, generator=g, dtype=torch.float64)
    conv = DepthwiseConv2d(16, 16, 7, padding=3, groups=16, bias=False)
    x = x64.float().requires_grad_()
    y = conv(x)
    assert type(y.grad_fn).__name__ == '_DepthwiseConv2dFunctionBackward'
    y.backward(grad64.float())
    w32 = conv.weight.grad
    _, w64, _ = _torch_grads(x64, conv.weight.double(), None, (3, 3), grad64)
    assert (w32.double() - w64).abs().max() <= 1e-4 * w64.abs().max()


def test_plain_conv_where_it_does_not_train_on_the_cpu():
    conv = DepthwiseConv2d(4, 4, 5, padding=2, groups=4)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    assert type(conv(x).grad_fn).__name__ == '_DepthwiseConv2dFunctionBackward'
    with torch.no_grad():
        assert conv(x).grad_fn is None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert type(conv(x).grad_fn).__name__ != '_DepthwiseConv2dFunctionBackward'


@pytest.mark.parametrize('kernel,kwargs,applies', [
    (7, dict(groups=4, padding=3), True),
    ((3, 5), dict(groups=4, padding=(1, 2)), True),
    (3, dict(groups=4, padding=1), False),  # oneDNN's own 3x3 kernel is a little faster
    (7, dict(groups=4, padding=3, stride=2), False),
    (7, dict(groups=4, padding=3, dilation=2), False),
    (7, dict(groups=2, padding=3), False),
    (7, dict(groups=4, padding='same'), False),
    (7, dict(groups=4, padding=3, padding_mode='reflect'), False),
])
def test_depthwise_applies(kernel, kwargs, applies):
    assert depthwise_applies(nn.Conv2d(4, 4, kernel, **kwargs)) is applies


def test_same_state_dict_as_nn_conv2d():
    ours = DepthwiseConv2d(4, 4, 7, padding=3, groups=4)
    theirs = nn.Conv2d(4, 4, 7, padding=3, groups=4)
    theirs.load_state_dict(ours.state_dict())  # strict: the same keys and shapes
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_meta_sdt_sepconv_uses_it():
    """The SepConv of the Meta-SDT's conv blocks: its 7x7 depthwise conv is one; its 1x1
    convs are not, nor is a 3x3 SepConv's depthwise conv."""
    from mmsnn.models.layers import InvertedSepConv
    from mmsnn.models.neurons import build_neuron
    block = InvertedSepConv(8, kernel_size=7, neuron=build_neuron)
    assert type(block.dwconv[0]) is DepthwiseConv2d
    assert type(block.pwconv1[0]) is nn.Conv2d and type(block.pwconv2[0]) is nn.Conv2d
    assert type(InvertedSepConv(8, kernel_size=3, neuron=build_neuron).dwconv[0]) is nn.Conv2d


def test_sepconv_draws_the_initialisation_of_plain_convs():
    """A seeded SepConv gets the weights, and leaves the random state, that the same SepConv
    of plain ``nn.Conv2d`` + BN layers would: the class adds no random draw."""
    from mmsnn.models.layers import conv_bn
    torch.manual_seed(3)
    ours = conv_bn(8, 8, 7, padding=3, groups=8)
    ours_next = torch.rand(4)
    torch.manual_seed(3)
    theirs = nn.Sequential(nn.Conv2d(8, 8, 7, padding=3, groups=8, bias=False), nn.BatchNorm2d(8))
    theirs_next = torch.rand(4)
    assert type(ours[0]) is DepthwiseConv2d
    torch.testing.assert_close(ours[0].weight, theirs[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(ours_next, theirs_next, rtol=0, atol=0)
