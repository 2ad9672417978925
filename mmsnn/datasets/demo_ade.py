"""A tiny synthetic dataset in the ADE20K layout, for demos and tests.

``generate_demo_ade(root)`` writes::

    root/images/training/demo_000000.jpg      root/annotations/training/demo_000000.png
    root/images/validation/demo_000000.jpg    root/annotations/validation/demo_000000.png

Label PNGs follow ADE20K's convention: 0 is "other" (ignored; here a thin band along every
shape boundary, like ADE's unlabelled edges), and the classes are 1..K. mmseg's ADE20K
pipeline loads them with ``reduce_zero_label=True`` (0 -> 255 = ignore, k -> k-1).

Class k=1 is a textured ``ground`` covering the background; classes 2..K are shapes drawn on
it (disc, rectangle, triangle, stripes, ring, cross, checker), in a class-typical hue with
jitter, rotated, scaled, overlapping, with pixel noise and JPEG artefacts. The content is a
pure function of ``seed``.

:class:`DemoADE20KDataset` is mmseg's ``ADE20KDataset`` with these class names (registered in
the mmseg scope); pass ``metainfo=dict(classes=DEMO_CLASSES[:K])`` when K differs from the
catalogue's length.

CLI: ``python -m mmsnn.datasets.demo_ade --out data/demo_ade`` (the same as
``python tools/misc/make_demo_data.py ade --out data/demo_ade``).
"""
import os
import os.path as osp
import sys

import numpy as np
from mmseg.datasets import ADE20KDataset

from ..registry import register

#: every class the generator can draw; label value = index + 1 (0 is "other")
DEMO_CLASSES = ('ground', 'disc', 'rectangle', 'triangle', 'stripes', 'ring', 'cross',
                'checker')
DEMO_PALETTE = [[120, 120, 120], [220, 40, 40], [40, 180, 60], [50, 80, 230], [230, 200, 30],
                [200, 60, 220], [40, 210, 220], [250, 140, 20]]
#: class-typical hue in degrees (ground has none: it is grey-brown noise)
_HUES = (None, 0, 120, 230, 55, 290, 180, 30)
DEFAULT_NUM_CLASSES = 5


@register('dataset', scopes=('mmseg',))
class DemoADE20KDataset(ADE20KDataset):
    """ADE20K-layout demo dataset (``.jpg`` images, ``.png`` labels, ``reduce_zero_label``).

    Same loading as mmseg's ``ADE20KDataset``; only the class names and palette differ.
    """
    METAINFO = dict(classes=DEMO_CLASSES, palette=DEMO_PALETTE)


# --------------------------------------------------------------------------- drawing
def _hsv_to_rgb(h, s, v):
    """h in degrees, s and v in [0, 1] -> uint8 RGB triple."""
    h = (h % 360) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    m = v - c
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.array([round(255 * (ch + m)) for ch in rgb], dtype=np.float32)


def _class_colour(rng, cls):
    hue = _HUES[cls - 1] + rng.uniform(-18, 18)
    return _hsv_to_rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.55, 0.95))


def _rotated(yy, xx, cy, cx, angle):
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return u, v


def _shape(rng, name, yy, xx, cy, cx, r):
    """(mask, texture) of one shape of radius ~r; texture in [0, 1] modulates the colour."""
    angle = rng.uniform(0, np.pi)
    u, v = _rotated(yy, xx, cy, cx, angle)
    ones = np.ones_like(yy)
    if name == 'disc':
        return (u ** 2 + v ** 2) <= r ** 2, ones
    if name == 'rectangle':
        a, b = r, r * rng.uniform(0.45, 0.9)
        return (np.abs(u) <= a) & (np.abs(v) <= b), ones
    if name == 'triangle':
        angles = angle + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-.3, .3, 3)
        py, px = cy + r * 1.2 * np.sin(angles), cx + r * 1.2 * np.cos(angles)
        inside = np.ones(yy.shape, bool)
        sign = None
        for k in range(3):
            y0, x0, y1, x1 = py[k], px[k], py[(k + 1) % 3], px[(k + 1) % 3]
            side = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
            if sign is None:
                sign = np.sign((x1 - x0) * (cy - y0) - (y1 - y0) * (cx - x0)) or 1.0
            inside &= side * sign >= 0
        return inside, ones
    if name == 'stripes':
        period = rng.uniform(5, 8)
        mask = (np.abs(u) <= r) & (np.abs(v) <= r * rng.uniform(0.6, 1.0))
        return mask, 0.35 + 0.65 * ((u % period) < period / 2)
    if name == 'ring':
        d = np.sqrt(u ** 2 + v ** 2)
        return (d <= r) & (d >= r * rng.uniform(0.45, 0.65)), ones
    if name == 'cross':
        w = r * rng.uniform(0.25, 0.4)
        return ((np.abs(u) <= r) & (np.abs(v) <= w)) | ((np.abs(v) <= r) & (np.abs(u) <= w)), ones
    if name == 'checker':
        cell = rng.uniform(5, 8)
        mask = (np.abs(u) <= r) & (np.abs(v) <= r)
        return mask, 0.3 + 0.7 * (((np.floor(u / cell) + np.floor(v / cell)) % 2) == 0)
    raise KeyError(name)


def _boundary(label):
    """Pixels whose 4-neighbourhood holds another label (the 'other' band, label 0)."""
    edge = np.zeros(label.shape, bool)
    dy = label[1:, :] != label[:-1, :]
    dx = label[:, 1:] != label[:, :-1]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge


def render_sample(rng, image_size=(128, 128), num_classes=DEFAULT_NUM_CLASSES,
                  max_shapes=4):
    """One (RGB uint8 image [H, W, 3], label uint8 [H, W]) pair; labels 0..num_classes."""
    H, W = image_size
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    # ground (class 1): smooth grey-brown gradient + coarse blotches
    base = rng.uniform(70, 150) + rng.uniform(-25, 25, 3)
    grad = (rng.uniform(-40, 40) * (yy / H - .5) + rng.uniform(-40, 40) * (xx / W - .5))
    coarse = rng.normal(0, 18, (H // 8 + 1, W // 8 + 1)).repeat(8, 0).repeat(8, 1)[:H, :W]
    img = base[None, None, :] + (grad + coarse)[..., None]
    label = np.ones((H, W), np.uint8)
    scale = min(H, W)
    for _ in range(rng.integers(1, max_shapes + 1)):
        cls = int(rng.integers(2, num_classes + 1))
        r = rng.uniform(0.1, 0.24) * scale
        cy, cx = rng.uniform(0.1, 0.9) * H, rng.uniform(0.1, 0.9) * W
        mask, texture = _shape(rng, DEMO_CLASSES[cls - 1], yy, xx, cy, cx, r)
        if mask.sum() < 16:
            continue
        colour = _class_colour(rng, cls)
        img[mask] = (colour[None, :] * texture[mask][:, None])
        label[mask] = cls
    img += rng.normal(0, 12, img.shape)
    label[_boundary(label)] = 0
    return np.clip(img, 0, 255).astype(np.uint8), label


def generate_demo_ade(root, num_train=160, num_val=40, image_size=(128, 128),
                      num_classes=DEFAULT_NUM_CLASSES, seed=0, max_shapes=4):
    """Write a synthetic ADE20K-layout dataset under ``root``; returns ``root``.

    Args:
        root (str): output folder (``images/{training,validation}``,
            ``annotations/{training,validation}``).
        num_train, num_val (int): number of images per split.
        image_size (tuple[int, int]): (H, W).
        num_classes (int): K, 2..8: ``ground`` plus K-1 shape classes (labels 1..K, 0 other).
        seed (int): the dataset is a pure function of the arguments.
        max_shapes (int): at most this many shapes per image (at least one).
    """
    import cv2  # opencv comes with mmcv/mmengine

    if not 2 <= num_classes <= len(DEMO_CLASSES):
        raise ValueError(f'num_classes must be in 2..{len(DEMO_CLASSES)}, got {num_classes}')
    H, W = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if min(H, W) < 16:
        raise ValueError(f'image_size must be at least 16 px, got {(H, W)}')
    rng = np.random.default_rng(seed)
    for split, n in (('training', num_train), ('validation', num_val)):
        img_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(n):
            img, label = render_sample(rng, (H, W), num_classes, max_shapes)
            name = f'demo_{i:06d}'
            cv2.imwrite(osp.join(img_dir, name + '.jpg'), img[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), label)
    return root




def __getattr__(name):
    # ``main``, the command line of ``python -m mmsnn.datasets.demo_ade``, is now
    # ``mmsnn.cli.make_demo_data.main(['ade', ...])``; kept for one release (PEP 562)
    if name == 'main':
        from ..cli.make_demo_data import deprecated_kind_main
        return deprecated_kind_main('ade', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


if __name__ == '__main__':
    # python -m mmsnn.datasets.demo_ade ... = tools/misc/make_demo_data.py ade ...
    from mmsnn.cli.make_demo_data import main
    sys.exit(main(['ade', *sys.argv[1:]]))
