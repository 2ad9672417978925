#!/usr/bin/env python
"""The main job on the embedded default (``make demo``).

1. generates the small COCO-format demo dataset (``data/demo_coco``, fixed seed) if missing;
2. trains the spiking Mask R-CNN with the SRB mixer (``configs/det/demo/sdt_srb_s_demo.py``)
   with the ST-ERF analysis on (``st_erf.enable=True``);
3. evaluates the last checkpoint with ``tools/test.py`` (box and mask mAP, pictures);
4. prints where everything is and the numbers.

Each run gets a fresh work dir (``work_dirs/demo/<time>``), so earlier results are never
overwritten. Options: ``--config``, ``--work-dir``, ``--data-root``, ``--no-erf``, and extra
``--cfg-options`` passed to the training.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = 'configs/det/demo/sdt_srb_s_demo.py'


def run(cmd, env):
    print('$', ' '.join(cmd), flush=True)
    t0 = time.time()
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    if code:
        raise SystemExit(f'error: step failed (exit {code}): {" ".join(cmd)}')
    return time.time() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--data-root', default='data/demo_coco')
    p.add_argument('--work-dir', help='default: work_dirs/demo/<date>_<time>')
    p.add_argument('--no-erf', action='store_true', help='train without the ST-ERF hook')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    args = p.parse_args()

    work_dir = args.work_dir or osp.join('work_dirs', 'demo', time.strftime('%Y%m%d_%H%M%S'))
    env = dict(os.environ)
    # small tensors: one OpenMP thread per process is as fast and far faster on a busy machine
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHONPATH'] = os.pathsep.join([ROOT] + ([env['PYTHONPATH']]
                                                  if env.get('PYTHONPATH') else []))
    py = sys.executable
    data_root = args.data_root.rstrip('/') + '/'

    t_start = time.time()
    if not osp.isfile(osp.join(ROOT, data_root, 'annotations', 'instances_train2017.json')):
        run([py, '-m', 'mmsnn.datasets.demo_coco', '--out', data_root], env)
    opts = [f'data_root={data_root}'] + ([] if args.no_erf else ['st_erf.enable=True'])
    t_train = run([py, 'tools/train.py', args.config, '--work-dir', work_dir,
                   '--cfg-options', *opts, *args.cfg_options], env)
    with open(osp.join(ROOT, work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    test_dir = osp.join(work_dir, 'test')
    t_test = run([py, 'tools/test.py', args.config, ckpt, '--work-dir', test_dir,
                  '--show-dir', osp.join(test_dir, 'vis'), '--cfg-options', f'data_root={data_root}'], env)

    with open(osp.join(ROOT, test_dir, 'metrics.json')) as f:
        metrics = json.load(f)["metrics"]
    erf_dir = osp.join(work_dir, 'st_erf')
    print('\n================ mmsnn demo: spiking Mask R-CNN (SRB) on generated COCO data')
    print(f'box mAP   {metrics.get("coco/bbox_mAP", float("nan")):.3f}   '
          f'(AP50 {metrics.get("coco/bbox_mAP_50", float("nan")):.3f})')
    print(f'mask mAP  {metrics.get("coco/segm_mAP", float("nan")):.3f}   '
          f'(AP50 {metrics.get("coco/segm_mAP_50", float("nan")):.3f})')
    print(f'time      train {t_train:.0f} s, test {t_test:.0f} s, total '
          f'{time.time() - t_start:.0f} s')
    print(f'checkpoint   {ckpt}')
    print(f'predictions  {test_dir}/vis/ (pictures), {test_dir}/metrics.json')
    if not args.no_erf and osp.isdir(osp.join(ROOT, erf_dir)):
        last = osp.join(ROOT, erf_dir, 'after_train', 'metrics.json')
        print(f'ST-ERF       {erf_dir}/{{before_train,epoch_N,after_train}}/ '
              '(erf.png, erf_tap*.npy, metrics.json)')
        if osp.isfile(last):
            with open(last) as f:
                erf = json.load(f)
            print('ST-ERF after training (tap: coverage, area ratio t=0.2/0.5/0.99):')
            for tap, m in sorted(erf['taps'].items()):
                print(f'  {tap}: coverage {m["coverage"]:.3f}, area ratio ' + '/'.join(
                    f'{m[f"area@{t}"]:.3f}' for t in ('0.2', '0.5', '0.99')))


if __name__ == '__main__':
    main()
