"""How many spikes float32 inference changes: the plain model, the fast path without and with
Winograd convolutions, each against the plain model in float64.

    python tools/analysis/spike_agreement.py --task det --size real
    python tools/analysis/spike_agreement.py --task seg --size real

The model is the benchmark's (``benchmark.py``: the config's backbone and neck, snn-T1,
``init_weights`` and BatchNorm statistics calibrated on the batch, so the activations are in
the range a trained model has). Every quantiser output of ``extract_feat`` (backbone + neck)
is recorded and compared element by element. The float64 run is the reference because it is
the arithmetic the fast path is proven exact in (``tests/test_fusion.py``): in float32 any
change of rounding -- folding BN, another convolution algorithm -- can move a spike whose
input lies next to a quantiser level, and in a network with global attention one moved spike
moves others.
"""
import argparse
import copy
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))


def spikes_of(model, inputs):
    """Every quantiser output of ``model.extract_feat(inputs)``, in call order."""
    import torch

    from mmsnn.models.neurons import MultiSpikeQuantizer
    spikes = []
    handles = [m.register_forward_hook(lambda m, i, o: spikes.append(o.detach().clone()))
               for m in model.modules() if isinstance(m, MultiSpikeQuantizer)]
    with torch.no_grad():
        model.extract_feat(inputs)
    for h in handles:
        h.remove()
    return spikes


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--task', choices=('det', 'seg'), default='det')
    p.add_argument('--size', choices=('demo', 'real'), default='real')
    args = p.parse_args()
    import torch

    import benchmark
    from _cost_of_spiking import calibrate_batchnorm
    from mmsnn.models import fuse_for_inference
    torch.manual_seed(0)
    cfg_path, shape = benchmark.CONFIGS[(args.task, args.size)]
    model = benchmark.build(args.task, args.size, 'snn-T1', torch.device('cpu'))
    data = benchmark.make_batch(args.task, shape, 1, 'cpu')
    calibrate_batchnorm(model, lambda: model(**model.data_preprocessor(data, True), mode='loss'))
    model.eval()
    inputs = model.data_preprocessor(data, False)['inputs']

    reference = spikes_of(copy.deepcopy(model).double(), inputs.double())
    total = sum(s.numel() for s in reference)
    print(f'{args.task} {osp.basename(cfg_path)} {shape[0]}x{shape[1]}: {len(reference)} spike '
          f'tensors, {total} spikes, {sum((s != 0).sum().item() for s in reference) / total:.1%}'
          ' non-zero (float64)')
    variants = dict(plain=lambda m: m,
                    fused=lambda m: fuse_for_inference(m, reuse_memory=False, winograd=False),
                    fast=lambda m: fuse_for_inference(m, reuse_memory=False))
    for name, make in variants.items():
        got = spikes_of(make(copy.deepcopy(model)), inputs)
        differ = sum((g.double() != r).sum().item() for g, r in zip(got, reference))
        first = next((i for i, (g, r) in enumerate(zip(got, reference))
                      if not torch.equal(g.double(), r)), None)
        print(f'  float32 {name:6} vs float64 plain: {differ:10d} spikes differ '
              f'({differ / total:.2%}); first differing tensor: '
              f'{"none" if first is None else f"#{first} of {len(reference)}"}')


if __name__ == '__main__':
    main()
