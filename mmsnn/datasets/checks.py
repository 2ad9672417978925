"""Checks of a dataset's content: every image opens, sizes match the annotation, boxes and
masks are valid, the categories are the config's classes.

``tools/misc/check_dataset.py CONFIG`` lists every problem (decoding every image);
``tools/train.py --check-data`` runs the same checks with header reads only and stops before
the first iteration; :class:`~mmsnn.datasets.guarded.GuardedDataset` asks them what is wrong
with a sample whose loading failed. (mmdet silently drops COCO boxes of zero size and
annotations of unknown categories, and a file that is missing or cut short stops training
with a decoder traceback at whatever iteration meets it.)

COCO-format datasets (``ann_file`` a ``.json`` with ``images``) are checked from the
annotation file itself, because mmdet's parser already drops what is wrong with it; other
datasets (mmseg's image / annotation folders, custom ``BaseDataset`` subclasses) through their
``data_list`` (``img_path``, ``seg_map_path``, ``instances``).
"""
import json
import os.path as osp
from collections import namedtuple

from ..utils.paths import is_remote

#: one problem: ``where`` (a file, or ``ann_file#annotation id``) and what is wrong there
Problem = namedtuple('Problem', ['where', 'what'])
Problem.__str__ = lambda p: f'{p.where}: {p.what}'

# the last bytes of a complete file: PNG ends with its IEND chunk, JPEG with the EOI marker
# (entropy-coded JPEG data never holds 0xFFD9: 0xFF is followed by a stuffed 0x00)
_END_MARKERS = {'PNG': b'IEND\xaeB`\x82', 'JPEG': b'\xff\xd9'}
_TAIL_BYTES = 1024


def image_problem(path, decode=False):
    """(what is wrong with the image file at ``path`` or None, its (width, height) or None).

    ``decode=False`` reads the header and the last kilobyte (a missing end marker finds files
    cut short); ``decode=True`` also decodes every pixel.
    """
    from PIL import Image
    if not osp.isfile(path):
        return 'file does not exist', None
    try:
        with Image.open(path) as img:
            size, fmt = img.size, img.format
            if decode:
                img.load()
    except Exception as e:  # noqa: BLE001 - any decoder failure is the file's problem
        return f'cannot be read as an image ({type(e).__name__}: {e})', None
    marker = _END_MARKERS.get(fmt)
    if marker is not None:
        with open(path, 'rb') as f:
            f.seek(max(0, osp.getsize(path) - _TAIL_BYTES))
            tail = f.read()
        if marker not in tail:
            return f'{fmt} file is cut short (no end marker): truncated or corrupt', size
    return None, size


def _size_problem(size, width, height):
    if size is not None and width and height and (width, height) != tuple(size):
        return (f'image is {size[0]}x{size[1]} but the annotation says {width}x{height} '
                '(width x height)')
    return None


def _box_problem(x1, y1, x2, y2, width, height):
    if not x2 > x1 or not y2 > y1:
        return 'box of zero or negative size'
    if width and height and (x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height):
        return f'box lies outside the {width}x{height} image'
    return None


def _polygon_problem(segmentation, width, height):
    """What is wrong with a COCO ``segmentation`` (polygons or RLE), or None."""
    if isinstance(segmentation, dict):  # RLE
        size = segmentation.get('size')
        if size is None or 'counts' not in segmentation:
            return 'RLE mask without size/counts'
        if width and height and list(size) != [height, width]:
            return f'RLE mask of size {size} on a {width}x{height} image (size is [h, w])'
        return None
    if not isinstance(segmentation, list):
        return f'segmentation of type {type(segmentation).__name__} (polygons or RLE expected)'
    for poly in segmentation:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            n = len(poly) if isinstance(poly, list) else '?'
            return f'polygon with {n} coordinates (needs x,y pairs of at least 3 points)'
    return None


def coco_problems(ann_path, img_dir, classes=None, decode=False):
    """([Problem], number of images) of a COCO-format annotation file and the images it
    names (in ``img_dir``); ``classes``: the config's, compared with the categories."""
    name = osp.basename(ann_path)
    try:
        with open(ann_path) as f:
            coco = json.load(f)
    except (OSError, ValueError) as e:
        return [Problem(ann_path, f'cannot be read as JSON ({e})')], 0
    problems = []
    categories = {c.get('id'): c.get('name') for c in coco.get('categories') or []}
    if classes is not None:
        for cat_id, cat in categories.items():
            if cat not in classes:
                problems.append(Problem(ann_path, f'category {cat!r} (id {cat_id}) is not a '
                                        f'class of the config (classes: {", ".join(classes)})'))
        for cls in classes:
            if cls not in categories.values():
                problems.append(Problem(ann_path, f'the config class {cls!r} is not a category '
                                        'of the annotation file'))
    images = {}
    for info in coco.get('images') or []:
        file_name = info.get('file_name')
        if file_name is None:
            problems.append(Problem(ann_path, f'image id {info.get("id")} has no file_name'))
            continue
        path = osp.join(img_dir, file_name)
        width, height = info.get('width'), info.get('height')
        images[info.get('id')] = (width, height)
        problem, size = image_problem(path, decode)
        problem = problem or _size_problem(size, width, height)
        if problem:
            problems.append(Problem(path, f'{problem} (image id {info.get("id")} of {name})'))
    for ann in coco.get('annotations') or []:
        where = f'{ann_path}#annotation {ann.get("id")}'
        img_id = ann.get('image_id')
        if img_id not in images:
            problems.append(Problem(where, f'names image id {img_id}, which is not in images'))
            continue
        width, height = images[img_id]
        if ann.get('category_id') not in categories:
            problems.append(Problem(where, f'category id {ann.get("category_id")} is not in '
                                    'categories'))
        bbox = ann.get('bbox')
        if not (isinstance(bbox, list) and len(bbox) == 4):
            problems.append(Problem(where, f'bbox {bbox!r} is not [x, y, w, h]'))
        else:
            x, y, w, h = bbox
            problem = _box_problem(x, y, x + w, y + h, width, height)
            if problem:
                problems.append(Problem(where, f'{problem}: bbox [x, y, w, h] = {bbox} '
                                        f'(image id {img_id})'))
        if ann.get('segmentation') is not None:
            problem = _polygon_problem(ann['segmentation'], width, height)
            if problem:
                problems.append(Problem(where, f'{problem} (image id {img_id})'))
    return problems, len(images)


def sample_problems(info, decode=False):
    """[Problem] of one ``data_list`` entry (``get_data_info(i)`` of an mmengine dataset)."""
    problems = []
    width, height = info.get('width'), info.get('height')
    sizes = {}
    for key in ('img_path', 'seg_map_path'):
        path = info.get(key)
        if not isinstance(path, str) or is_remote(path):
            continue
        problem, sizes[key] = image_problem(path, decode)
        problem = problem or _size_problem(sizes[key], width, height)
        if problem:
            problems.append(Problem(path, problem))
    img_size, seg_size = sizes.get('img_path'), sizes.get('seg_map_path')
    if img_size and seg_size and img_size != seg_size:
        problems.append(Problem(info['seg_map_path'], f'annotation is {seg_size[0]}x'
                                f'{seg_size[1]} but its image {info["img_path"]} is '
                                f'{img_size[0]}x{img_size[1]}'))
    for instance in info.get('instances') or []:
        bbox = instance.get('bbox')
        if bbox is not None and len(bbox) == 4:
            problem = _box_problem(*bbox, width, height)
            if problem:
                problems.append(Problem(info.get('img_path', '?'),
                                        f'{problem}: bbox [x1, y1, x2, y2] = {list(bbox)}'))
        mask = instance.get('mask')
        if mask is not None:
            problem = _polygon_problem(mask, width, height)
            if problem:
                problems.append(Problem(info.get('img_path', '?'), problem))
    return problems


def _inner_datasets(ds):
    """The innermost dataset dicts of a (possibly wrapped / concatenated) dataset config."""
    if not isinstance(ds, dict):
        return []
    if isinstance(ds.get('datasets'), (list, tuple)):
        return [d for sub in ds['datasets'] for d in _inner_datasets(sub)]
    if isinstance(ds.get('dataset'), dict):
        return _inner_datasets(ds['dataset'])
    return [ds]


def _prefix(ds, key):
    prefix = ds.get('data_prefix') or {}
    if isinstance(prefix, str):
        return prefix
    return prefix.get(key, '') or ''


def _coco_file(ds):
    """The path of a dataset config's COCO-format annotation file, or None."""
    ann = ds.get('ann_file')
    if not isinstance(ann, str) or not ann.endswith('.json') or is_remote(ann):
        return None
    root = ds.get('data_root') or ''
    path = ann if osp.isabs(ann) or not root else osp.join(root, ann)
    try:
        with open(path) as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    return path if '"images"' in head or '"annotations"' in head else None


def _build(cfg, ds):
    """The dataset of config dict ``ds`` with its file list loaded and no pipeline."""
    from mmengine.registry import init_default_scope
    from ..registry import get_registry
    init_default_scope(cfg.get('default_scope'))
    ds = dict(ds, pipeline=[])
    dataset = get_registry('dataset', cfg.get('default_scope')).build(ds)
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    return dataset


def dataset_problems(cfg, loaders=('train', 'val', 'test'), decode=False):
    """([Problem], number of images checked, [dataset types whose files cannot be listed])
    for every dataset of the ``{split}_dataloader``\\ s in ``loaders``."""
    from ..utils.data_checks import _dataset_classes
    problems, seen, checked, unchecked = [], set(), 0, []
    for split in loaders:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        for ds in _inner_datasets(loader.get('dataset')):
            key = repr(sorted((k, repr(v)) for k, v in ds.items() if k != 'pipeline'))
            if key in seen:  # val and test usually share one dataset
                continue
            seen.add(key)
            classes = _dataset_classes(cfg, ds)[0]
            coco = _coco_file(ds)
            if coco is not None:
                img_dir = _prefix(ds, 'img') or _prefix(ds, 'img_path')
                root = ds.get('data_root') or ''
                if root and not osp.isabs(img_dir):
                    img_dir = osp.join(root, img_dir)
                found, num_images = coco_problems(coco, img_dir, classes, decode)
                problems += found
                checked += num_images
                continue
            dataset = _build(cfg, ds)
            if not hasattr(dataset, 'get_data_info'):
                unchecked.append(str(ds.get('type')))
                continue
            for i in range(len(dataset)):
                problems += sample_problems(dataset.get_data_info(i), decode)
                checked += 1
    return problems, checked, unchecked


def format_problems(problems, limit=None):
    """One line per problem (the first ``limit`` of them and how many more)."""
    shown = problems if limit is None else problems[:limit]
    lines = [str(p) for p in shown]
    if len(problems) > len(shown):
        lines.append(f'... and {len(problems) - len(shown)} more')
    return lines
