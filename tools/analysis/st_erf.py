"""Spatial / spatio-temporal ERF of mmsnn backbones, several models side by side.

Examples::

    # fresh (random-init) backbones of det/seg configs, or trained ones with --checkpoint
    python tools/analysis/st_erf.py configs/det/a.py configs/det/b.py \
        --checkpoint work_dirs/a/epoch_12.pth work_dirs/b/epoch_12.pth --out-dir erf_out

    # bare backbones, no config needed: conv vs MLPixer vs SRB
    python tools/analysis/st_erf.py --arch s --mixers conv mlpixer srb --size 128 128
    python tools/analysis/st_erf.py --backbone "dict(type='MetaSDT', arch='t', mixer='srb')"

    # multi-step (real LIF neurons, T=4): adds the ST-ERF delay grid and the temporal ERF
    python tools/analysis/st_erf.py --arch t --mixers conv srb --T 4 --neuron LIF

    # any mix of mmsnn backbones and stock ANN backbones, matched stage stride, one figure
    python tools/analysis/st_erf.py --models spikformer sdt_v1 qkformer metasdt-conv \
        swin-t pvtv2-b0 --size 224 --strides 8 16
    python tools/analysis/st_erf.py --models qkformer "dict(type='QKFormer', arch=None, \
        embed_dims=64, depth=4, num_heads=2)" --encoding per-step --delays --strides 16

    # speed of the one-forward ERF engine vs one forward per layer per sample
    python tools/analysis/st_erf.py --benchmark

``--models`` (presets: ``MODEL_PRESETS``, or literal backbone dicts; ``mmdet.``/``mmseg.``
type prefixes reach the toolboxes' own backbones): every model sees the same inputs, and the
columns are stage strides (each model's deepest tap with that stride, measured by a forward
pass) or, with ``--delays``, the ST-ERF delays of one stride. Writes ``models.png`` and
``models_table.md`` (coverage, area ratios) and prints the table.

Writes, under --out-dir: ``compare.png`` (rows: models, columns: taps, shared colour scale
per tap), ``compare_st_erf.png`` / ``compare_temporal.png`` for multi-step models,
``summary.json`` and one folder per model with its ``.npy`` maps, PNGs and ``metrics.json``;
prints a table of area ratios, coverage and Gaussian width.

The work is done in :mod:`mmsnn.analysis.erf_compare` (the comparisons) and
:mod:`mmsnn.analysis.erf_models` (which models, how they are built, taps by stride).
"""
import argparse
import argparse

from mmsnn.analysis.erf_compare import run_analysis, run_benchmark, run_model_comparison
from mmsnn.analysis.erf_models import MODEL_PRESETS
from mmsnn.utils.errors import run_tool


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='ERF / ST-ERF analysis of mmsnn backbones (det/seg configs or bare '
                    'backbones), several models compared side by side.')
    p.add_argument('configs', nargs='*', help='mmdet / mmseg config files')
    p.add_argument('--checkpoint', nargs='+', default=None,
                   help='one checkpoint per config (same order; "none" for random init), '
                        'or one for a single config')
    p.add_argument('--backbone', action='append', default=[],
                   help="bare backbone spec, e.g. \"dict(type='MetaSDT', arch='s', "
                        "mixer='srb')\" (repeatable)")
    p.add_argument('--arch', default=None, help='MetaSDT size for --mixers (t, s, m, l, ...)')
    p.add_argument('--embed-dims', type=int, nargs=4, default=None,
                   help='MetaSDT embed dims C0..C3 for --mixers (overrides --arch)')
    p.add_argument('--mixers', nargs='+', default=None, choices=['conv', 'mlpixer', 'srb'],
                   help='one bare MetaSDT per mixer')
    p.add_argument('--T', type=int, default=None, help='time steps of bare backbones')
    p.add_argument('--neuron', default=None, choices=['MultiSpike', 'ILIF', 'LIF'],
                   help='neuron of bare backbones (ILIF/LIF: real multi-step SNN)')
    p.add_argument('--models', nargs='+', default=None, metavar='MODEL',
                   help='compare any mix of backbones at matched strides: preset names '
                        f'({", ".join(MODEL_PRESETS)}) or literal backbone dicts, e.g. '
                        "\"dict(type='mmdet.SwinTransformer')\"")
    p.add_argument('--model-checkpoints', nargs='+', default=None, metavar='CKPT',
                   help='one checkpoint per --models entry ("none": random init)')
    p.add_argument('--strides', type=int, nargs='+', default=[8, 16],
                   help='--models: stage strides to compare (one column each)')
    p.add_argument('--delays', action='store_true',
                   help='--models: columns are the ST-ERF delays tau = 0..T-1 of the last '
                        '--strides entry (needs --encoding per-step)')
    p.add_argument('--encoding', default='direct', choices=['direct', 'per-step'],
                   help='--models, multi-step SNNs: the same noise frame at every step '
                        '(direct, as the reference ERF script) or one frame per step '
                        '(per-step: also gives the ST-ERF delays)')
    p.add_argument('--calibrate-bn', type=int, default=0, metavar='N',
                   help='--models: before probing, set every BatchNorm\'s running statistics '
                        'to those of its input over N noise images (other noise than the '
                        'probes). At random init the eval-mode BNs have unit statistics and '
                        'the LIF SNNs fall silent after their first layer; calibrated, each '
                        'layer sees normalised inputs (as the reference goldens\' weights)')
    p.add_argument('--objective', default='relu', choices=['relu', 'sum'],
                   help='--models: the probed unit is the centre of relu(tap) summed over '
                        "channels (relu: RepLKNet's ERF script; at random init the plain sum "
                        "of a LayerNorm-ed ANN tap is identically 0) or of the tap itself")
    p.add_argument('--labels', nargs='+', default=None, help='names of the models in figures')
    p.add_argument('--taps', type=int, nargs='+', default=None,
                   help='stage taps to probe (default: the backbone out_indices)')
    p.add_argument('--num-inputs', type=int, default=8, help='N(0,1) noise inputs (runs)')
    p.add_argument('--size', type=int, nargs='+', default=[224, 224], metavar=('H', 'W'),
                   help='input size H W (or one number for a square)')
    p.add_argument('--batch-size', type=int, default=4, help='inputs per forward pass')
    p.add_argument('--grad', default='abs', choices=['abs', 'relu'])
    p.add_argument('--reduce', default='mean', choices=['mean', 'sum'])
    p.add_argument('--normalize', default=None, choices=['global', 'row', 'col', 'map'],
                   help='which maps of the comparison figure share a colour scale (default: '
                        "col; with --models: map, or row with --delays, since ANN and SNN "
                        'gradients differ by orders of magnitude)')
    p.add_argument('--batched-grads', action='store_true',
                   help='all targets in one vmapped backward (faster, more memory)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out-dir', default='work_dirs/st_erf')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   metavar='KEY=VALUE', help='override config settings (every config)')
    p.add_argument('--benchmark', action='store_true',
                   help='time the one-forward ERF engine against one forward per layer '
                        'per sample, side by side, and exit')
    args = p.parse_args(argv)
    if args.normalize is None:
        args.normalize = ('row' if args.delays else 'map') if args.models else 'col'
    if len(args.size) == 1:
        args.size = args.size * 2
    if len(args.size) != 2:
        p.error('--size takes H W (or one number)')
    return args


def main(argv=None):
    args = parse_args(argv)
    body = run_benchmark if args.benchmark else \
        run_model_comparison if args.models else run_analysis
    return run_tool(body, args)


if __name__ == '__main__':
    main()
