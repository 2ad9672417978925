# Spiking Mask R-CNN 1x on COCO with a Meta-SDT backbone: the settings every configs/det file
# shares. Not meant to be trained directly (the top-level configs pick size and mixer).
#
# Inherits mmdet's stock Mask R-CNN R50-FPN (model heads, assigners, samplers, test cfg,
# COCO instance data, 1x schedule, runtime) through the stock config that adds the DETR-style
# multi-scale crop augmentation with masks (short side 480..800 step 32, long side <= 1333;
# or resize 400..600 -> random crop 384..600 -> resize 480..800). That config is the Swin-T
# Mask R-CNN one; its backbone, Swin-specific optimiser options and 3x schedule are replaced.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'

custom_imports = dict(imports=['mmsnn'], allow_failed_imports=False)
# checkpoints written atomically (a killed save keeps the earlier ones) and resumable under
# torch >= 2.6, also with mmdet's / mmseg's own tools/train.py
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

pretrained = None  # top-level configs set the backbone's ImageNet checkpoint
data_root = 'data/coco/'

# The strides Meta-SDT taps (1, 2, 3, 4) really have: stage 4 keeps stride 16 (the reference
# declares [4, 8, 16, 32] / [4, 8, 16, 32, 64], which is wrong for its own backbone). The 5th
# pyramid level is the neck's stride-2 max-pool of the 4th: stride 32.
feat_strides = [4, 8, 16, 16]
anchor_strides = [4, 8, 16, 16, 32]
# anchor sizes stay the stock 32..512 (base size x scale 8), now decoupled from the strides
anchor_base_sizes = [4, 8, 16, 32, 64]

model = dict(
    backbone=dict(
        _delete_=True,
        type='MetaSDT',
        arch='s',
        mixer='conv',
        out_indices=(1, 2, 3, 4),
        init_cfg=None),
    neck=dict(type='SpikingFPN', in_channels=[32, 64, 128, 192], out_channels=256,
              num_outs=5),
    rpn_head=dict(
        type='SpikingRPNHead',
        anchor_generator=dict(strides=anchor_strides, base_sizes=anchor_base_sizes)),
    roi_head=dict(
        type='SpikingRoIHead',
        bbox_roi_extractor=dict(featmap_strides=feat_strides),
        bbox_head=dict(type='SpikingShared2FCBBoxHead'),
        mask_roi_extractor=dict(featmap_strides=feat_strides),
        mask_head=dict(type='SpikingFCNMaskHead')))

# data: batch 16 = 4 GPUs x 4 images; every split reads `data_root` (see README for
# --cfg-options data_root=...)
train_dataloader = dict(batch_size=4, num_workers=4, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# schedule: 12 epochs, 1000-iter linear warm-up, x0.1 at epochs 8 and 11
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
# ST-ERF analysis of the backbone during training (mmsnn.engine.hooks.STERFHook), off by
# default: `--cfg-options st_erf.enable=True` (tools/train.py turns this into the hook; with
# other launchers put dict(type='STERFHook', ...) in custom_hooks). Before training, every 4
# epochs and after training; files under {work_dir}/st_erf/.
st_erf = dict(enable=False, interval=4, by_epoch=True, num_inputs=2, size=(128, 128))
# lr is for 16 images per iteration; `--auto-scale-lr` rescales it for other batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=16)
