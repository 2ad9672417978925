"""Checks that the data a config names is on disk, with the expected layout in the message.

Run by ``tools/train.py`` and ``tools/test.py`` before the runner is built, so a missing
dataset stops the run at once with the paths, the layout and the fix, instead of deep inside
a dataset class.
"""
import os
import os.path as osp

from .errors import MMSNNUserError
from .paths import is_remote

#: layouts named in the "data not found" message, keyed by a word of the dataset type:
#: (name, layout, generator of the demo data, demo configs)
DATA_LAYOUTS = {
    'coco': ('COCO', """\
    data/coco/
      annotations/instances_train2017.json
      annotations/instances_val2017.json
      train2017/   (images)
      val2017/     (images)""", 'python -m mmsnn.datasets.demo_coco --out data/demo_coco',
             'configs/det/demo/'),
    'ade20k': ('ADE20K', """\
    data/ade/ADEChallengeData2016/
      images/training/         images/validation/
      annotations/training/    annotations/validation/""",
            'python -m mmsnn.datasets.demo_ade --out data/demo_ade', 'configs/seg/demo/'),
}


def _iter_datasets(ds, key):
    """(config key, dataset dict) for ``ds`` and every dataset nested in wrappers."""
    if not isinstance(ds, dict):
        return
    yield key, ds
    inner = ds.get('dataset')
    if isinstance(inner, dict):
        yield from _iter_datasets(inner, f'{key}.dataset')
    inners = ds.get('datasets')
    if isinstance(inners, (list, tuple)):
        for i, d in enumerate(inners):
            yield from _iter_datasets(d, f'{key}.datasets.{i}')


def _join(root, path):
    if not root or osp.isabs(path):
        return path
    return osp.join(root, path)


def _layout_for(types):
    text = ' '.join(t.lower() for t in types)
    for word, layout in DATA_LAYOUTS.items():
        if word in text:
            return layout
    return None


def missing_data_paths(cfg, loaders=('train', 'val', 'test')):
    """[(config key, path, 'folder'|'file', dataset type)] for data that is not on disk."""
    missing = []
    for split in loaders:
        loader = cfg.get(f'{split}_dataloader')
        if isinstance(loader, dict):
            for key, ds in _iter_datasets(loader.get('dataset'), f'{split}_dataloader.dataset'):
                dtype = str(ds.get('type', '?'))
                root = ds.get('data_root') or ''
                if root and not is_remote(root) and not osp.isdir(root):
                    missing.append((f'{key}.data_root', root, 'folder', dtype))
                    continue  # everything below lives in the missing root
                ann = ds.get('ann_file') or ''
                if isinstance(ann, str) and ann and not is_remote(ann):
                    full = _join(root, ann)
                    if not osp.isfile(full):
                        missing.append((f'{key}.ann_file', full, 'file', dtype))
                prefix = ds.get('data_prefix') or {}
                if isinstance(prefix, str):
                    prefix = {'': prefix}
                if isinstance(prefix, dict):
                    for name, sub in prefix.items():
                        if isinstance(sub, str) and sub and not is_remote(sub):
                            full = _join(root, sub)
                            if not osp.exists(full):
                                missing.append((f'{key}.data_prefix.{name}'.rstrip('.'), full,
                                                'folder', dtype))
        evaluator = cfg.get(f'{split}_evaluator')
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(metrics):
            if isinstance(metric, dict):
                ann = metric.get('ann_file')
                if isinstance(ann, str) and ann and not is_remote(ann) \
                        and not osp.isfile(ann):
                    key = f'{split}_evaluator' + (f'.{i}' if len(metrics) > 1 else '')
                    missing.append((f'{key}.ann_file', ann, 'file', str(metric.get('type'))))
    return missing


def check_data_paths(cfg, loaders=('train', 'val', 'test')):
    """Every data root, annotation file and image folder the dataloaders need exists."""
    missing = missing_data_paths(cfg, loaders)
    if not missing:
        return
    lines = [f'the dataset files are not where the config expects them '
             f'(relative paths are taken from {os.getcwd()!r}):']
    by_path = {}
    for key, path, kind, _ in missing:  # a path shared by several loaders is named once
        by_path.setdefault((path, kind), []).append(key)
    for (path, kind), keys in by_path.items():
        lines.append(f'    {", ".join(keys)}: {kind} {path!r} does not exist')
    layout = _layout_for([m[3] for m in missing])
    roots = [m for m in missing if m[0].endswith('.data_root')]
    demo = bool(layout and roots and all('demo' in str(m[1]) for m in roots))
    if layout:
        tree = layout[1]
        if demo:  # the generated data has the layout under its own root
            first = tree.splitlines()[0]
            tree = tree.replace(first.strip(), str(roots[0][1]).rstrip('/') + '/', 1)
        lines.append(f'  expected {layout[0]} layout:\n{tree}')
    else:
        lines.append('  expected: each data_root folder holds the ann_file and the '
                     'data_prefix folders named above.')
    if demo:
        root = str(roots[0][1]).rstrip('/')
        generator = layout[2].rsplit(' --out ', 1)[0]
        lines.append(f'  fix: generate the demo data first: {generator} --out {root}')
    else:
        single = ' '.join(f'{key}=...' for key, _, _, _ in missing[:2])
        lines.append('  fix: put the data there (a symlink works: ln -s /your/dataset '
                     'data/...), or point the config at it with --cfg-options '
                     'data_root=/path/to/dataset/ (tools/train.py and tools/test.py re-point '
                     f'every dataloader and evaluator; single entries: {single})')
        if layout:
            lines.append(f'  or try the tools on generated data: {layout[2]}, then use a '
                         f'config in {layout[3]}')
    raise MMSNNUserError('\n'.join(lines))

