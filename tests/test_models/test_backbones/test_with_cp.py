"""MetaSDT ``with_cp``: checkpointed blocks give the gradients of the plain model
also with multi-step I-LIF neurons (T = 4: each neuron runs its T steps from a reset membrane
inside the block, so the recomputation sees the state the first forward saw) and with
drop-path (the checkpoint replays the random draws); and the spikes saved outside the
checkpointed blocks stay compact (uint8) with ``with_cp``."""
import pytest
import torch

from mmsnn.models import MetaSDT

TINY = dict(embed_dims=(8, 16, 16, 16), num_heads=2, mixer='srb')


def _grads(model, x):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(1)  # the drop-path draws
    taps = model(x)
    # a fixed non-uniform weighting, so every tap element's gradient path counts
    loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).reshape(t.shape)).sum()
               for t in taps)
    loss.backward()
    return [x.grad] + [p.grad for p in model.parameters()], [t.detach() for t in taps]


@pytest.mark.parametrize('T, neuron', [(1, None), (4, dict(type='ILIF')), (4, dict(type='LIF'))])
def test_with_cp_gradients_equal_float64(T, neuron):
    torch.manual_seed(0)
    kw = dict(TINY, T=T, neuron_cfg=neuron, drop_path_rate=0.3)
    plain = MetaSDT(**kw).double().train()
    cp = MetaSDT(**kw, with_cp=True).double().train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    g_plain, t_plain = _grads(plain, x)
    g_cp, t_cp = _grads(cp, x)
    for a, b in zip(t_plain, t_cp):
        assert torch.equal(a, b)
    assert all(g is not None for g in g_plain) and len(g_plain) == len(g_cp)
    assert sum(int((g != 0).any()) for g in g_plain) > len(g_plain) // 2
    for a, b in zip(g_plain, g_cp):
        assert torch.equal(a, b)


@pytest.mark.parametrize('T, neuron', [(1, None), (4, dict(type='ILIF'))])
def test_with_cp_keeps_saved_spikes_compact(T, neuron, monkeypatch):
    # the downsample layers between the checkpointed blocks save their input spikes for the
    # backward pass; with_cp used to switch compact storage off for the whole backbone
    from mmsnn.models import neurons
    packed = []
    pack = neurons._pack_spikes

    def counting_pack(t):
        out = pack(t)
        if isinstance(out, tuple):
            packed.append(out[0].dtype)
        return out

    monkeypatch.setattr(neurons, '_pack_spikes', counting_pack)
    torch.manual_seed(0)
    model = MetaSDT(**TINY, T=T, neuron_cfg=neuron, with_cp=True).train()
    sum(t.sum() for t in model(torch.randn(2, 3, 32, 32))).backward()
    assert packed and set(packed) == {torch.uint8}
