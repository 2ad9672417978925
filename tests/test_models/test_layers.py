"""Spike-driven attention: the two product orders agree, and mixed precision stays in range."""
import pytest
import torch
import torch.nn as nn

from mmsnn.models import MetaSDT
from mmsnn.models.layers import SpikeDrivenAttention
from mmsnn.models.neurons import build_neuron

FP16_MAX = torch.finfo(torch.float16).max


def _attention(dim, num_heads, attn_order='linear', drive=None):
    torch.manual_seed(0)
    attn = SpikeDrivenAttention(dim, num_heads, neuron=build_neuron, attn_order=attn_order)
    if drive is not None:  # BN shift: q, k and v fire at a chosen (high) rate
        for conv in (attn.q_conv, attn.k_conv, attn.v_conv):
            nn.init.constant_(conv[1].bias, drive)
    return attn.eval()


def _capture_product(attn):
    """The attention product as the talking-heads neuron receives it (last call wins)."""
    seen = {}
    attn.talking_heads.register_forward_pre_hook(lambda m, args: seen.update(y=args[0]))
    return seen


def test_quadratic_order_equals_linear_order():
    torch.manual_seed(1)
    x = torch.randn(2, 32, 6, 7, dtype=torch.float64) * 2
    outs = []
    for order in ('linear', 'quadratic'):
        attn = _attention(32, 4, order, drive=1.0).double()
        seen = _capture_product(attn)
        xi = x.clone().requires_grad_(True)
        out = attn(xi)
        (grad,) = torch.autograd.grad((out * out).sum(), xi)
        outs.append((seen['y'], out, grad))
    (y_lin, out_lin, g_lin), (y_quad, out_quad, g_quad) = outs
    assert y_lin.abs().max() > 1  # spikes fired, the product is not all zeros
    torch.testing.assert_close(y_quad, y_lin, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_quad, out_lin, rtol=1e-12, atol=1e-12)
    assert g_lin.abs().sum() > 0
    torch.testing.assert_close(g_quad, g_lin, rtol=1e-10, atol=1e-12)


def test_backbone_attn_order_gives_the_same_taps():
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    outs = []
    for order in ('linear', 'quadratic'):
        torch.manual_seed(0)
        m = MetaSDT(embed_dims=(8, 16, 16, 16), num_heads=2, out_indices=(3, 4),
                    attn_order=order).double().eval()
        with torch.no_grad():
            outs.append(m(x))
    for a, b in zip(*outs):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# linear: the stride-16 map of an 800x1216 image (N = 50*76 tokens); the O(N^2) order on a
# quarter of it with a wider head (CPU fp16 matmuls are slow), in the same regime
@pytest.mark.parametrize('attn_order,dim,h,w', [('linear', 64, 50, 76),
                                               ('quadratic', 128, 25, 38)])
def test_attention_under_fp16_autocast_matches_float64_on_a_large_map(attn_order, dim, h, w):
    """On a large map the unscaled product q k^T v exceeds fp16's range; the scaled one
    does not, and must stay finite and close to float64."""
    attn = _attention(dim, 1, attn_order, drive=4.0)
    x = torch.randn(1, dim, h, w)
    seen = _capture_product(attn)
    with torch.no_grad():
        ref_out = attn.double()(x.double())
        ref = seen['y']
        attn.float()
        with torch.autocast('cpu', dtype=torch.float16):
            out = attn(x)
        y = seen['y']
    assert y.dtype == torch.float16  # the products really ran in fp16
    # the regime of the bug: the unscaled product would not fit in fp16
    assert ref.abs().max() / attn.scale > FP16_MAX
    assert torch.isfinite(y).all()
    err = (y.double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-2, f'fp16 attention product off by {err:.2e} (relative to its max)'
    # the layer's output (after talking-heads spikes and the projection) follows
    assert torch.isfinite(out).all()
    out_err = (out.double() - ref_out).abs().max() / ref_out.abs().max()
    assert out_err < 5e-2, out_err
