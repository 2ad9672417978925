"""The cost-of-spiking comparison of ``tools/analysis/benchmark.py``: the configs and model
variants it times, how a variant is built and fed, the time ratios, and the Markdown block it
writes (into ``docs/en/benchmarks.md``, :mod:`.docs_block`).
"""
import contextlib
import os
import subprocess

from mmengine.utils import get_git_hash

from ..model_init import quiet_init  # noqa: F401  (re-exported: the benchmark's own name)

#: (task, size) -> (config under mmsnn's configs/, input size H, W)
CONFIGS = {
    ('det', 'demo'): ('det/demo/sdt_srb_s_demo.py', (128, 128)),
    ('det', 'real'): ('det/sdt_srb_s_coco.py', (800, 1344)),  # 800x1333, padded /32
    ('seg', 'demo'): ('seg/demo/sdt_srb_demo.py', (96, 96)),
    ('seg', 'real'): ('seg/sdt_srb_s_ade20k.py', (512, 512)),
}
VARIANTS = {
    'snn-T1': dict(T=1, neuron=None, head=None),
    'snn-T4int': dict(T=4, neuron=None, head=None),
    'snn-T4': dict(T=4, neuron=dict(type='ILIF'), head=None),
    'relu-T1': dict(T=1, neuron=dict(type='ReLU'), head=dict(type='ReLU')),
    'relu-T4': dict(T=4, neuron=dict(type='ReLU', multistep=True), head=dict(type='ReLU')),
}
SCOPES = ('backbone+neck', 'full')
#: (name, variant a, variant b): the ratio is a's time / b's time
RATIOS = (('SNN/ReLU at T=1', 'snn-T1', 'relu-T1'),
          ('SNN/ReLU at T=4', 'snn-T4', 'relu-T4'),
          ('I-LIF T=4 / T=1', 'snn-T4', 'snn-T1'),
          ('integer T=4 / T=1', 'snn-T4int', 'snn-T1'))


def set_head_neurons(model_cfg, head_cfg):
    """Put ``neuron_cfg=head_cfg`` into the neck and every spiking head of a model config."""
    for key in ('neck', 'rpn_head', 'decode_head'):
        if key in model_cfg:
            model_cfg[key]['neuron_cfg'] = head_cfg
    if 'roi_head' in model_cfg:
        for key in ('bbox_head', 'mask_head'):
            model_cfg['roi_head'][key]['neuron_cfg'] = head_cfg


def build(task, size_key, variant, device, with_cp=False):
    """The model of ``CONFIGS[(task, size_key)]`` as ``variant`` (:data:`VARIANTS`), on
    ``device``, not yet initialised (:func:`quiet_init`)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from ... import configs
    cfg = Config.fromfile(configs.path(CONFIGS[(task, size_key)][0]))
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
    """A batch of ``batch`` random images of ``shape`` with annotations (3 boxes and masks per
    image for detection, a label map for segmentation), as the data loader gives it."""
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


def ratio_rows(results, tasks, sizes, scopes):
    """Time ratios (a's time / b's time = b's img/s / a's img/s) of :data:`RATIOS`, for every
    task, size and scope; nan where a variant is missing or failed."""
    rows = []
    for task in tasks:
        for size_key in sizes:
            for scope in scopes:
                row = {r['variant']: r for r in results if r['task'] == task and
                       r['size_key'] == size_key and r['scope'] == scope and 'error' not in r}
                for name, a, b in RATIOS:
                    def ratio(key):
                        if a in row and b in row:
                            return row[b][key] / row[a][key]
                        return float('nan')
                    rows.append(dict(task=task, size_key=size_key, scope=scope, ratio=name,
                                     train=ratio('train_img_s'), infer=ratio('infer_img_s')))
    return rows


def range_text(r):
    """One line of :func:`activation_range`'s evidence."""
    return (f'max|pre-act| {r["max_abs"]:9.3g}  non-finite {r["nonfinite"]:6.1%}  denormal '
            f'{r["denormal"]:6.1%}  active {r["active"]:6.1%}  tap RMS '
            + ' '.join(f'{t:.3g}' for t in r['tap_rms']))


def rois_text(r):
    if 'rois_train' not in r:
        return ''

    def one(d):
        return '/'.join(','.join(map(str, d[k])) or '-' for k in ('bbox', 'mask'))
    return f'rois+masks train {one(r["rois_train"])}, infer {one(r["rois_infer"])}'


def machine_text(device):
    """Cores, CPU model / GPU, torch threads, torch version."""
    import torch

    from mmsnn.utils.machine import cpu_description
    dev = (torch.cuda.get_device_name(0) if str(device).startswith('cuda') else 'CPU')
    return (f'{os.cpu_count()} cores ({cpu_description()}), device {dev}, torch '
            f'{torch.__version__}, {os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())}'
            ' thread(s)')


def git_commit(root):
    """Short hash of the checkout at ``root`` (mmengine's ``get_git_hash``), marked when
    tracked files have uncommitted changes."""
    with contextlib.chdir(root):
        sha = get_git_hash(fallback='', digits=7)
        if not sha:  # not a git checkout, or no git
            return 'unknown'
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               text=True, capture_output=True).stdout.strip()
    return sha + (' (with uncommitted changes)' if dirty else '')


def results_block(results, ratios, meta):
    """The cost-of-spiking block (Markdown) of this run's results, for the docs page."""
    variants = [v for v in VARIANTS if any(r['variant'] == v for r in results)]
    lines = [f'```bash\n{meta["command"]}\n```', '',
             f'Measured {meta["date"]} at commit {meta["commit"]}; {meta["machine"]}; '
             f'batch {meta["batch"]}, {meta["timing"]}. Cells: train / inference images/s, '
             'peak MiB of the train step.', '',
             '| task | input | scope | ' + ' | '.join(variants) + ' |',
             '|---|---|---|' + '---|' * len(variants)]
    keys = []
    for r in results:
        if (r['task'], r['size'], r['scope']) not in keys:
            keys.append((r['task'], r['size'], r['scope']))
    for task, size, scope in keys:
        cells = []
        for v in variants:
            r = next((r for r in results if (r['task'], r['size'], r['scope'], r['variant']) ==
                      (task, size, scope, v)), None)
            if r is None:
                cells.append('')
            elif 'error' in r:
                cells.append('failed: ' + r['error'].split(':', 1)[-1].strip()[:60])
            else:
                cells.append(f'{r["train_img_s"]:.3g} / {r["infer_img_s"]:.3g} '
                             f'({r["train_peak_mib"]:.0f})')
        lines.append(f'| {task} | {size.replace("x", "×")} | {scope} | ' + ' | '.join(cells)
                     + ' |')
    lines += ['', 'Time ratios, train step (inference in brackets):', '',
              '| task | input | scope | ' + ' | '.join(n for n, _, _ in RATIOS) + ' |',
              '|---|---|---|' + '---|' * len(RATIOS)]
    size_of = {(r['task'], r['size_key']): r['size'] for r in results}
    for key in dict.fromkeys((q['task'], q['size_key'], q['scope']) for q in ratios):
        cells = [f'{q["train"]:.2f} ({q["infer"]:.2f})' for q in ratios
                 if (q['task'], q['size_key'], q['scope']) == key]
        lines.append(f'| {key[0]} | {size_of.get(key[:2], key[1]).replace("x", "×")} | '
                     f'{key[2]} | ' + ' | '.join(cells) + ' |')
    rng = [r for r in results if 'range_before' in r]
    if rng:
        lines += ['', 'Activation range, backbone + neck in eval mode at random init, before / '
                  'after the normalisation (over all neuron inputs: max |x|, the non-finite '
                  'and the denormal fraction; `active`: the fraction of non-zero neuron '
                  'outputs):', '',
                  '| task | input | variant | max \\|x\\| | non-finite | denormal | active |',
                  '|---|---|---|---|---|---|---|']
        for r in rng:
            b, a = r['range_before'], r.get('range_after', r['range_before'])
            lines.append(
                f'| {r["task"]} | {r["size"].replace("x", "×")} | {r["variant"]} | '
                f'{b["max_abs"]:.3g} / {a["max_abs"]:.3g} | {b["nonfinite"]:.1%} / '
                f'{a["nonfinite"]:.1%} | {b["denormal"]:.1%} / {a["denormal"]:.1%} | '
                f'{b["active"]:.1%} / {a["active"]:.1%} |')
    rois = sorted({(r['task'], r['size'], rois_text(r)) for r in results if rois_text(r)})
    if rois:
        lines += ['', 'RoIs the box / mask heads got per call (every variant alike): '
                  + '; '.join(f'{t} {s.replace("x", "×")}: {txt}' for t, s, txt in rois)
                  + '.']
    return '\n'.join(lines)


#: the former name, from when the block went into the README (kept for one release)
readme_block = results_block
