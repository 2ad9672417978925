"""A tiny, generated COCO-format instance-segmentation dataset for demos and tests.

Each image is a noisy background with 1-4 non-overlapping filled shapes; the class decides
both the shape and its colour (circle = red, rectangle = green, triangle = blue, ...), so a
small detector trained for a few minutes on CPU reaches clearly non-zero box and mask mAP.
Masks are stored as COCO polygons (the exact polygons that were painted), boxes are the
tight boxes of the painted pixels. Everything is drawn from ``numpy.random.default_rng(seed)``
and written as PNG, so the same arguments always give byte-identical files.

Layout (the standard COCO one, so mmdet's stock ``CocoDataset`` configs read it)::

    root/annotations/instances_train2017.json
    root/annotations/instances_val2017.json
    root/train2017/000001.png ...
    root/val2017/...

CLI: ``python -m mmsnn.datasets.demo_coco --out data/demo_coco`` (the same as
``python tools/misc/make_demo_data.py coco --out data/demo_coco``).

:func:`set_data_root` (re-point a loaded config at another dataset root) lives in
:mod:`mmsnn.utils.config` and stays importable from here.
"""
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np

from ..utils.config import set_data_root  # noqa: F401  (kept importable from here)

#: (name, BGR colour) per class, in class-id order
SHAPES = (
    ('circle', (40, 40, 220)),
    ('rectangle', (40, 200, 40)),
    ('triangle', (220, 60, 40)),
    ('diamond', (30, 210, 230)),
    ('hexagon', (200, 40, 200)),
    ('star', (220, 220, 40)),
    ('ellipse', (30, 140, 250)),
    ('cross', (250, 250, 250)),
)
MAX_CLASSES = len(SHAPES)


def demo_metainfo(num_classes=3):
    """``metainfo`` for mmdet's ``CocoDataset`` (class names and RGB palette)."""
    _check_classes(num_classes)
    return dict(classes=tuple(n for n, _ in SHAPES[:num_classes]),
                palette=[tuple(int(v) for v in c[::-1]) for _, c in SHAPES[:num_classes]])


def _check_classes(num_classes):
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes must be in 1..{MAX_CLASSES}, got {num_classes}')


def _regular(n, r, rot, rx=None):
    a = rot + np.arange(n) * 2 * np.pi / n
    return np.stack([np.cos(a) * (rx or r), np.sin(a) * r], 1)


def _shape_polygon(name, r, rng):
    """Polygon (K, 2) centred at 0 with a bounding radius of about ``r``."""
    rot = rng.uniform(0, 2 * np.pi)
    if name == 'circle':
        return _regular(32, r, 0)
    if name == 'rectangle':
        w, h = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.6, 1.0)
        return np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    if name == 'triangle':
        return _regular(3, r, rot)
    if name == 'diamond':
        return np.array([[0, -r], [0.6 * r, 0], [0, r], [-0.6 * r, 0]])
    if name == 'hexagon':
        return _regular(6, r, rot)
    if name == 'star':
        pts = _regular(10, r, rot)
        pts[1::2] *= 0.45
        return pts
    if name == 'ellipse':
        return _regular(32, 0.55 * r, 0, rx=r)
    if name == 'cross':
        a, b = r, 0.35 * r
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a],
                         [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])
    raise KeyError(name)


def _make_image(rng, image_size, num_classes, max_objects, min_radius, max_radius):
    H, W = image_size
    base = rng.integers(70, 170, size=3)
    img = base[None, None, :] + rng.normal(0, 12, size=(H, W, 3))
    # a gentle illumination gradient so the background is not flat
    gy, gx = np.mgrid[0:H, 0:W]
    img += (rng.uniform(-25, 25) * gx / W + rng.uniform(-25, 25) * gy / H)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)

    objects, boxes = [], []
    n_obj = int(rng.integers(1, max_objects + 1))
    for _ in range(n_obj):
        for _try in range(20):  # rejection sampling: keep objects apart
            label = int(rng.integers(num_classes))
            r = rng.uniform(min_radius, max_radius)
            cx, cy = rng.uniform(r + 1, W - r - 1), rng.uniform(r + 1, H - r - 1)
            pts = np.round(_shape_polygon(SHAPES[label][0], r, rng) + [cx, cy]).astype(np.int32)
            pts[:, 0] = np.clip(pts[:, 0], 0, W - 1)
            pts[:, 1] = np.clip(pts[:, 1], 0, H - 1)
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            if any(x0 < bx1 + 3 and bx0 < x1 + 3 and y0 < by1 + 3 and by0 < y1 + 3
                   for bx0, by0, bx1, by1 in boxes):
                continue
            boxes.append((x0, y0, x1, y1))
            colour = np.clip(np.array(SHAPES[label][1]) + rng.integers(-20, 21, 3), 0, 255)
            cv2.fillPoly(img, [pts], tuple(int(c) for c in colour))
            mask = np.zeros((H, W), np.uint8)
            cv2.fillPoly(mask, [pts], 1)
            objects.append((label, pts, mask))
            break
    return img, objects


def _write_split(root, split, num_images, image_size, num_classes, rng, first_img_id,
                 first_ann_id, max_objects, min_radius, max_radius):
    img_dir = osp.join(root, f'{split}2017')
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    ann_id = first_ann_id
    for k in range(num_images):
        img_id = first_img_id + k
        img, objects = _make_image(rng, image_size, num_classes, max_objects, min_radius,
                                   max_radius)
        file_name = f'{img_id:06d}.png'
        cv2.imwrite(osp.join(img_dir, file_name), img)
        images.append(dict(id=img_id, file_name=file_name, height=int(image_size[0]),
                           width=int(image_size[1])))
        for label, pts, mask in objects:
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
            annotations.append(dict(
                id=ann_id, image_id=img_id, category_id=label + 1,
                bbox=[x0, y0, w, h], area=int(mask.sum()), iscrowd=0,
                segmentation=[[float(v) for v in pts.reshape(-1)]]))
            ann_id += 1
    categories = [dict(id=i + 1, name=SHAPES[i][0], supercategory='shape')
                  for i in range(num_classes)]
    coco = dict(info=dict(description=f'mmsnn demo COCO ({split})', version='1.0'),
                licenses=[], images=images, annotations=annotations, categories=categories)
    ann_dir = osp.join(root, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    ann_file = osp.join(ann_dir, f'instances_{split}2017.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    return ann_file, ann_id


def generate_demo_coco(root, num_train=200, num_val=50, image_size=(128, 128), num_classes=3,
                       seed=0, max_objects=3, min_radius=None, max_radius=None):
    """Write the demo dataset under ``root``; returns ``{'train': ann_file, 'val': ann_file}``.

    Args:
        root (str): output folder (created).
        num_train / num_val (int): images per split.
        image_size (tuple[int, int]): (H, W) of every image.
        num_classes (int): 1..8 shape classes (circle, rectangle, triangle, diamond, ...).
        seed (int): the only source of randomness; same arguments -> same files.
        max_objects (int): at most this many objects per image (at least one).
        min_radius / max_radius (float | None): object radius range in pixels; default
            10% .. 25% of the shorter image side.
    """
    _check_classes(num_classes)
    H, W = int(image_size[0]), int(image_size[1])
    short = min(H, W)
    min_radius = 0.10 * short if min_radius is None else float(min_radius)
    max_radius = 0.25 * short if max_radius is None else float(max_radius)
    if not 2 <= min_radius <= max_radius < short / 2 - 1:
        raise ValueError(f'radius range [{min_radius}, {max_radius}] does not fit {H}x{W} '
                         'images')
    rng = np.random.default_rng(seed)
    out, ann_id = {}, 1
    out['train'], ann_id = _write_split(root, 'train', num_train, (H, W), num_classes, rng, 1,
                                        ann_id, max_objects, min_radius, max_radius)
    out['val'], ann_id = _write_split(root, 'val', num_val, (H, W), num_classes, rng,
                                      num_train + 1, ann_id, max_objects, min_radius,
                                      max_radius)
    return out




def __getattr__(name):
    # ``main``, the command line of ``python -m mmsnn.datasets.demo_coco``, is now
    # ``mmsnn.cli.make_demo_data.main(['coco', ...])``; kept for one release (PEP 562)
    if name == 'main':
        from ..cli.make_demo_data import deprecated_kind_main
        return deprecated_kind_main('coco', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


if __name__ == '__main__':
    # python -m mmsnn.datasets.demo_coco ... = tools/misc/make_demo_data.py coco ...
    from mmsnn.cli.make_demo_data import main
    sys.exit(main(['coco', *sys.argv[1:]]))
