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


def _num_classes_keys(model, prefix='model'):
    """(config key, value) of every ``num_classes`` in the model config, except the RPN's
    (class-agnostic: always 1)."""
    if isinstance(model, dict):
        for key, value in model.items():
            path = f'{prefix}.{key}'
            if key == 'num_classes' and isinstance(value, int):
                yield path, value
            elif key not in ('rpn_head', 'train_cfg', 'test_cfg', 'data_preprocessor'):
                yield from _num_classes_keys(value, path)
    elif isinstance(model, (list, tuple)):
        for i, value in enumerate(model):
            yield from _num_classes_keys(value, f'{prefix}.{i}')


def _dataset_classes(cfg, ds):
    """(classes, where they come from) of a dataset config, or (None, None) if unknown."""
    meta = ds.get('metainfo')
    if isinstance(meta, dict) and meta.get('classes') is not None:
        return tuple(meta['classes']), 'metainfo'
    scope = cfg.get('default_scope')
    dtype = ds.get('type')
    if scope not in ('mmdet', 'mmseg') or dtype is None:
        return None, None
    if scope == 'mmdet':  # the toolbox's own registry: utils sits below mmsnn.registry
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    try:
        cls = dtype if isinstance(dtype, type) else DATASETS.get(dtype)
    except Exception:  # noqa: BLE001 - an unknown type is reported when it is built
        cls = None
    classes = getattr(cls, 'METAINFO', {}).get('classes') if cls is not None else None
    if classes is None:
        return None, None
    return tuple(classes), f'{cls.__name__}.METAINFO'


def _annotation_categories(root, ann):
    """Category names of a COCO-format annotation file, or None (not COCO json / absent)."""
    import json
    if not isinstance(ann, str) or not ann.endswith('.json') or is_remote(ann):
        return None
    path = _join(root or '', ann)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            categories = json.load(f).get('categories')
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(categories, list):
        return None
    return [c.get('name') for c in categories if isinstance(c, dict)]


def check_num_classes(cfg, loaders=('train', 'val', 'test')):
    """The heads predict as many classes as the datasets have, and the annotation files'
    categories are among those classes; otherwise one message naming the keys to set.

    (mmdet would train to the end and then fail in ``CocoMetric`` on a label the dataset does
    not have; annotations of categories outside ``metainfo.classes`` are silently dropped.)
    """
    heads = list(_num_classes_keys(cfg.get('model')))
    for split in loaders:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        for key, ds in _iter_datasets(loader.get('dataset'), f'{split}_dataloader.dataset'):
            if ds.get('dataset') is not None or ds.get('datasets') is not None:
                continue  # a wrapper: its inner datasets are checked
            classes, source = _dataset_classes(cfg, ds)
            if classes is None:
                continue
            categories = _annotation_categories(ds.get('data_root'), ds.get('ann_file'))
            if categories:
                unknown = [c for c in categories if c not in classes]
                if unknown:
                    shown = ', '.join(repr(c) for c in categories[:10])
                    raise MMSNNUserError(
                        f'{key}.ann_file has categories ({shown}) that are not classes of the '
                        f'dataset ({source}: {len(classes)} classes, e.g. '
                        f'{", ".join(map(repr, classes[:3]))}); their annotations would be '
                        'dropped.\n  fix: set the dataset classes in every dataloader '
                        "(metainfo=dict(classes=(...))) and the heads' num_classes to "
                        f'{len(categories)}: {_keys_to_set(heads, len(categories))}'
                        " (see the README's \"Custom datasets\").")
            wrong = [(k, v) for k, v in heads if v != len(classes)]
            if wrong:
                raise MMSNNUserError(
                    f'the heads predict {wrong[0][1]} classes '
                    f'({", ".join(f"{k}={v}" for k, v in wrong)}) but {key} has '
                    f'{len(classes)} ({source}: {", ".join(map(repr, classes[:5]))}'
                    f'{", ..." if len(classes) > 5 else ""}).\n'
                    f'  fix: {_keys_to_set(wrong, len(classes))}')


def _keys_to_set(heads, n):
    keys = ' '.join(f'{k}={n}' for k, _ in heads)
    return f'set {keys} (in the config or with --cfg-options)'
