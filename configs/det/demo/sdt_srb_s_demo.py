# CPU demo: the sdt_srb_s_coco.py model, shrunk, on the generated demo dataset.
#
#   python -m mmsnn.datasets.demo_coco --out data/demo_coco
#   python tools/train.py configs/det/demo/sdt_srb_s_demo.py
#   python tools/test.py configs/det/demo/sdt_srb_s_demo.py work_dirs/sdt_srb_s_demo/epoch_N.pth
#
# Swapped relative to the COCO config: the data (demo_coco, 128 px images, 3 classes via
# metainfo, a plain resize + flip pipeline instead of the 480..800 px crops), the schedule
# (a few epochs, short warm-up, a higher lr for training from scratch) and, to fit a 2-core
# CPU, the widths (backbone embed_dims (16, 32, 64, 96), neck / heads 64 channels) and the
# number of proposals / sampled RoIs. On a busy machine set OMP_NUM_THREADS=1 (often several
# times faster than letting two threads fight for the cores).
_base_ = '../sdt_srb_s_coco.py'

data_root = 'data/demo_coco/'
metainfo = dict(
    classes=('circle', 'rectangle', 'triangle'),
    palette=[(220, 40, 40), (40, 200, 40), (40, 60, 220)])
num_classes = 3
img_scale = (128, 128)
width = 64

model = dict(
    backbone=dict(embed_dims=(16, 32, 64, 96)),
    neck=dict(in_channels=[16, 32, 64, 96], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(
            out_channels=width, roi_layer=dict(sampling_ratio=2)),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(
            out_channels=width, roi_layer=dict(sampling_ratio=2)),
        mask_head=dict(in_channels=width, conv_out_channels=width,
                       num_classes=num_classes)),
    # fewer proposals / sampled RoIs: RoIAlign dominates the time on CPU, and the demo
    # images hold 1-3 objects
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[max_epochs - 2], gamma=0.1)
]
# The box head's two fc layers learn at a tenth of the lr. AdamW moves every weight by about
# lr per step whatever its gradient's size, so one step shifts an fc output by up to
# lr x the sum of its inputs (3136 spike counts of 0..4): at lr 3e-3 about the width of the
# quantiser's window [0, 4], outside of which its surrogate gradient is zero. Without this,
# in the regression test's recipe (tests/test_models/test_detector.py, lr 3e-3) at seed 3 the first fc's
# outputs left the window within 5 iterations (50% inside at init, 8% after 5 iterations,
# 1% later; the rest above 4 or below 0; 80% of the second fc's units below 0 for every
# RoI), no gradient reached either fc from iteration 27 on and the detector learned nothing.
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(custom_keys={'roi_head.bbox_head.shared_fcs': dict(lr_mult=0.1)}))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs))
# a fixed seed: the same weights init and sampling each run (unseeded runs of this short
# schedule scatter by several points of mAP)
randomness = dict(seed=0)
