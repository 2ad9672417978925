"""Throughput and peak memory of the spiking detector / segmentor, against their ReLU twins.

    python tools/analysis/benchmark.py                       # det + seg, demo + real sizes
    python tools/analysis/benchmark.py --tasks det --sizes demo --iters 3 --json bench.json
    python tools/analysis/benchmark.py --fast-path --sizes real --iters 5   # issue 14
    python tools/analysis/benchmark.py --fast-path --profile --tasks det --sizes demo

For each task (Mask R-CNN from configs/det, Semantic FPN from configs/seg), input size
(the demo's, and the real COCO 800x1333 / ADE20K 512x512 inputs) and model variant it measures
the train step (forward, backward, AdamW step) and inference in images/s, and the peak memory
of the train step. Variants:

    snn-T1     the reference: integer quantiser, T = 1
    snn-T4int  integer quantiser with T = 4: virtual time, the same single step (cost ~ T1)
    snn-T4     I-LIF multi-step neurons, T = 4 real steps (keep_time; heads average logits)
    relu-T1    the same network with ReLU in place of every neuron
    relu-T4    ReLU twin run over 4 steps like snn-T4

Every measurement runs in its own subprocess (peaks do not mix; CPU peak = peak RSS above the
RSS after building, with glibc's mmap threshold fixed so freed tensors leave the RSS at once;
CUDA peak = max_memory_allocated). All rows of one call are measured side
by side on the same machine; ratios are printed at the end and written as JSON.

``--fast-path`` instead times inference (``test_step``, no grad) of the reference model
(snn-T1) before and after ``mmsnn.models.fuse_for_inference``, both in one process, alternating
(``_fast_path.py``); ``--iters`` rounds, medians.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from _memory import CHILD_ENV, memory_base, peak_above

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    ('det', 'demo'): ('configs/det/demo/sdt_srb_s_demo.py', (128, 128)),
    ('det', 'real'): ('configs/det/sdt_srb_s_coco.py', (800, 1344)),  # 800x1333, padded /32
    ('seg', 'demo'): ('configs/seg/demo/sdt_srb_demo.py', (96, 96)),
    ('seg', 'real'): ('configs/seg/sdt_srb_s_ade20k.py', (512, 512)),
}
VARIANTS = {
    'snn-T1': dict(T=1, neuron=None, head=None),
    'snn-T4int': dict(T=4, neuron=None, head=None),
    'snn-T4': dict(T=4, neuron=dict(type='ILIF'), head=None),
    'relu-T1': dict(T=1, neuron=dict(type='ReLU'), head=dict(type='ReLU')),
    'relu-T4': dict(T=4, neuron=dict(type='ReLU', multistep=True), head=dict(type='ReLU')),
}


def set_head_neurons(model_cfg, head_cfg):
    """Put ``neuron_cfg=head_cfg`` into the neck and every spiking head of a model config."""
    for key in ('neck', 'rpn_head', 'decode_head'):
        if key in model_cfg:
            model_cfg[key]['neuron_cfg'] = head_cfg
    if 'roi_head' in model_cfg:
        for key in ('bbox_head', 'mask_head'):
            model_cfg['roi_head'][key]['neuron_cfg'] = head_cfg


def build(task, size_key, variant, device, with_cp=False):
    import torch  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsnn  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS[(task, size_key)][0]))
    init_default_scope(cfg.default_scope)
    v = VARIANTS[variant]
    bb = cfg.model.backbone
    bb.T = v['T']
    bb.neuron_cfg = v['neuron']
    bb.keep_time = v['T'] > 1 and (v['neuron'] is not None)
    bb.with_cp = with_cp
    if v['head'] is not None:
        set_head_neurons(cfg.model, v['head'])
    if task == 'seg':
        cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)  # no SyncBN
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    return registry.build(cfg.model).to(device)


def make_batch(task, shape, batch, device):
    import torch
    if task == 'det':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch, [(3, *shape)] * batch, num_items=[3] * batch,
                              num_classes=3, with_mask=True, device=device)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, *shape)))
        s.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=shape))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, *shape), dtype=torch.uint8)
                        for _ in range(batch)], data_samples=samples)


def measure(args):
    import torch
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = build(args.task, args.size_key, args.variant, dev, args.with_cp)
    shape = tuple(args.shape) if args.shape else CONFIGS[(args.task, args.size_key)][1]
    data = make_batch(args.task, shape, args.batch, args.device)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))

    def sync():
        if dev.type == 'cuda':
            torch.cuda.synchronize()

    def timed(fn):
        if args.iters == 0:  # one cold step (for steps too long to repeat)
            t0 = time.perf_counter()
            fn()
            sync()
            return time.perf_counter() - t0
        fn()  # warm-up
        sync()
        best = float('inf')
        for _ in range(args.iters):
            t0 = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        return best

    base = memory_base(dev)
    model.train()
    t_train = timed(lambda: model.train_step(data, optim))
    peak = peak_above(base, dev)
    t_test = float('nan')
    if not args.no_infer:
        model.eval()
        with torch.no_grad():
            t_test = timed(lambda: model.test_step(data))
    print(json.dumps(dict(train_img_s=args.batch / t_train, infer_img_s=args.batch / t_test,
                          train_peak_mib=peak)))


def fast_path(args):
    """Inference of the plain and the fused snn-T1 model, alternating in this process."""
    import torch

    from _fast_path import alternate, fast_path_row, plain_and_fused, print_rows
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    print(f'inference fast path, batch {args.batch}, device {args.device}, '
          f'{torch.get_num_threads()} thread(s)')
    rows = []
    for task in args.tasks:
        for size_key in args.sizes:
            cfg_path, shape = CONFIGS[(task, size_key)]
            torch.manual_seed(0)
            plain, fused = plain_and_fused(build(task, size_key, 'snn-T1', dev))
            data = make_batch(task, shape, args.batch, args.device)
            with torch.no_grad():
                times = alternate(dict(plain=lambda: plain.test_step(data),
                                       fused=lambda: fused.test_step(data)), args.iters, sync)
            label = f'{task} {osp.basename(cfg_path)[:-3]} {shape[0]}x{shape[1]}'
            rows.append(fast_path_row(label, times))
            if args.profile:
                from _fast_path import print_profile
                with torch.no_grad():
                    rows[-1]['dense_bound'] = print_profile(
                        label, lambda: plain.test_step(data), lambda: fused.test_step(data))
            del plain, fused
    print_rows(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tasks', nargs='+', default=['det', 'seg'], choices=['det', 'seg'])
    p.add_argument('--sizes', nargs='+', default=['demo', 'real'], choices=['demo', 'real'])
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument('--iters', type=int, default=2,
                   help='timed iterations after a warm-up; 0: time one cold step')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--device', default=None, help='cuda if available, else cpu')
    p.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'),
                   help='input size for every task and size (default: the configs\' sizes)')
    p.add_argument('--with-cp', action='store_true',
                   help='backbone activation checkpointing (MetaSDT with_cp) in every variant')
    p.add_argument('--no-infer', action='store_true', help='time the train step only')
    p.add_argument('--fast-path', action='store_true',
                   help='time inference before/after fuse_for_inference, alternating')
    p.add_argument('--profile', action='store_true',
                   help='with --fast-path: top ops of both models and the speed-up bound')
    p.add_argument('--json', help='write the results here')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--task', help=argparse.SUPPRESS)
    p.add_argument('--size-key', help=argparse.SUPPRESS)
    p.add_argument('--variant', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.child:
        return measure(args)
    if args.fast_path:
        return fast_path(args)

    env = dict(os.environ, **CHILD_ENV, PYTHONPATH=os.pathsep.join(
        [ROOT] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))
    results = []
    print(f'device {args.device}, batch {args.batch}, best of {args.iters} iterations')
    print(f'{"task":4} {"size":10} {"variant":10} | {"train img/s":>11} {"infer img/s":>11} '
          f'{"train peak MiB":>14}')
    for task in args.tasks:
        for size_key in args.sizes:
            shape = tuple(args.shape) if args.shape else CONFIGS[(task, size_key)][1]
            for variant in args.variants:
                cmd = [sys.executable, osp.abspath(__file__), '--child', '--task', task,
                       '--size-key', size_key, '--variant', variant, '--iters',
                       str(args.iters), '--batch', str(args.batch), '--device', args.device]
                cmd += ['--shape', *map(str, args.shape)] if args.shape else []
                cmd += ['--with-cp'] if args.with_cp else []
                cmd += ['--no-infer'] if args.no_infer else []
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                tag = dict(task=task, size=f'{shape[0]}x{shape[1]}', size_key=size_key,
                           variant=variant)
                if out.returncode:  # e.g. killed for memory: report it, measure the rest
                    why = ('killed (out of memory?)' if out.returncode < 0 else
                           out.stderr.strip().splitlines()[-1][-200:])
                    print(f'{task:4} {tag["size"]:10} {variant:10} | failed: exit '
                          f'{out.returncode}: {why}', flush=True)
                    results.append(dict(tag, error=f'exit {out.returncode}: {why}'))
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r.update(tag)
                results.append(r)
                print(f'{task:4} {r["size"]:10} {variant:10} | {r["train_img_s"]:11.3f} '
                      f'{r["infer_img_s"]:11.3f} {r["train_peak_mib"]:14.1f}', flush=True)

    print('\nratios (train step time; inference time in brackets):')
    ratios = []
    for task in args.tasks:
        for size_key in args.sizes:
            row = {r['variant']: r for r in results
                   if r['task'] == task and r['size_key'] == size_key and 'error' not in r}

            def ratio(a, b, key):
                if a in row and b in row:
                    return row[b][key] / row[a][key]  # time ratio = inverse throughput ratio
                return float('nan')

            for name, a, b in (('SNN/ReLU at T=1', 'snn-T1', 'relu-T1'),
                               ('SNN/ReLU at T=4', 'snn-T4', 'relu-T4'),
                               ('I-LIF T=4 / T=1', 'snn-T4', 'snn-T1'),
                               ('integer T=4 / T=1', 'snn-T4int', 'snn-T1')):
                tr, inf = ratio(a, b, 'train_img_s'), ratio(a, b, 'infer_img_s')
                ratios.append(dict(task=task, size_key=size_key, ratio=name, train=tr,
                                   infer=inf))
                print(f'  {task} {size_key:4} {name:18} {tr:6.2f}  ({inf:.2f})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(results=results, ratios=ratios), f, indent=2)


if __name__ == '__main__':
    main()
