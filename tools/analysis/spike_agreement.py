"""How many spikes float32 inference changes: the plain model, the fast path without and with
Winograd convolutions, each against the plain model in float64.

    python tools/analysis/spike_agreement.py --task det --size real
    python tools/analysis/spike_agreement.py --task seg --size real

The model is the benchmark's (``benchmark.py``, ``mmsnn.analysis.benchmark``: the config's
backbone and neck, snn-T1, ``init_weights`` and BatchNorm statistics calibrated on the batch,
so the activations are in the range a trained model has). Every quantiser output of
``extract_feat`` (backbone + neck) is recorded and compared element by element. The float64 run is the reference because it is
the arithmetic the fast path is proven exact in (``tests/test_deploy/test_convert_for_inference.py``): in float32 any
change of rounding -- folding BN, another convolution algorithm -- can move a spike whose
input lies next to a quantiser level, and in a network with global attention one moved spike
moves others. The comparison is ``mmsnn.analysis.spike_agreement``.
"""
import argparse
import os.path as osp


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--task', choices=('det', 'seg'), default='det')
    p.add_argument('--size', choices=('demo', 'real'), default='real')
    args = p.parse_args()
    import torch

    from mmsnn.analysis.benchmark.cost_of_spiking import CONFIGS, build, make_batch
    from mmsnn.analysis.benchmark.fairness import calibrate_batchnorm
    from mmsnn.analysis.spike_agreement import spike_agreement
    from mmsnn.deploy import convert_for_inference
    torch.manual_seed(0)
    cfg_path, shape = CONFIGS[(args.task, args.size)]
    model = build(args.task, args.size, 'snn-T1', torch.device('cpu'))
    data = make_batch(args.task, shape, 1, 'cpu')
    calibrate_batchnorm(model, lambda: model(**model.data_preprocessor(data, True), mode='loss'))
    model.eval()
    inputs = model.data_preprocessor(data, False)['inputs']

    variants = dict(plain=lambda m: m,
                    fused=lambda m: convert_for_inference(m, reuse_memory=False, winograd=False),
                    fast=lambda m: convert_for_inference(m, reuse_memory=False))
    reference, rows = spike_agreement(model, inputs, variants)
    total = sum(s.numel() for s in reference)
    print(f'{args.task} {osp.basename(cfg_path)} {shape[0]}x{shape[1]}: {len(reference)} spike '
          f'tensors, {total} spikes, {sum((s != 0).sum().item() for s in reference) / total:.1%}'
          ' non-zero (float64)')
    for name, (differ, first) in rows.items():
        print(f'  float32 {name:6} vs float64 plain: {differ:10d} spikes differ '
              f'({differ / total:.2%}); first differing tensor: '
              f'{"none" if first is None else f"#{first} of {len(reference)}"}')


if __name__ == '__main__':
    main()
