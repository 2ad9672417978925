# CPU demo: sdt_s_ade20k.py with the synthetic ADE20K-layout dataset and a short schedule.
#   python -m mmsnn.datasets.demo_ade --out data/demo_ade      # 160 + 40 images, 128x128
#   python tools/train.py configs/seg/demo/sdt_demo.py
# Swapped: data (DemoADE20KDataset at data/demo_ade, 5 classes, the stock pipelines with
# their scales shrunk 4x for the 128 px images, 96x96 crops), schedule (300 iterations),
# and a tiny backbone (embed dims (16, 32, 64, 96), neck/head width 32) so it trains in a
# few minutes on 2 CPU cores. Model, optimiser and pipelines are otherwise inherited.
_base_ = '../sdt_s_ade20k.py'

data_root = 'data/demo_ade'
dataset_type = 'DemoADE20KDataset'
# labels 1..5 of mmsnn.datasets.demo_ade (DEMO_CLASSES[:5]); 0 is "other" (ignored)
demo_classes = ('ground', 'disc', 'rectangle', 'triangle', 'stripes')
crop_size = (96, 96)


def _demo_scale(transform):
    """A stock transform with its image scale shrunk from 512 px to 128 px."""
    t = dict(transform)  # shallow copy: only top-level keys change
    if t.get('scale') == (2048, 512):
        t['scale'] = (512, 128)
    if 'crop_size' in t:
        t['crop_size'] = crop_size
    return t


# the stock ADE20K pipelines (inherited), only rescaled
train_pipeline = [_demo_scale(t) for t in _base_.train_pipeline]
test_pipeline = [_demo_scale(t) for t in _base_.test_pipeline]
__demo_dataset = dict(
    type=dataset_type, data_root=data_root, metainfo=dict(classes=demo_classes))

train_dataloader = dict(
    num_workers=2, dataset=dict(pipeline=train_pipeline, **__demo_dataset))
val_dataloader = dict(
    num_workers=2, dataset=dict(pipeline=test_pipeline, **__demo_dataset))
test_dataloader = val_dataloader

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(embed_dims=(16, 32, 64, 96)),
    # taps (0, 1, 2, 4): channels (8, 16, 32, 96)
    neck=dict(in_channels=[8, 16, 32, 96], out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=32, num_classes=5))

# 300 iterations: 30 of linear warm-up, then poly; validate and save at the end
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=30, end=300),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=300)
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(by_epoch=False, interval=300))
randomness = dict(seed=0)
