# Meta-SDT-s (conv mixer) + spiking Semantic FPN on ADE20K, 512x512, 160k iterations.
# The reference recipe (NeurIPS 2025 ST-ERF paper, read off its released code):
# Semantic FPN with spiking neck and head (quantiser -> conv -> BN), neck width 128,
# 150 classes, 512x512 crops, 160k iterations, AdamW lr 1e-3 / wd 0.005, decode head lr x2,
# 1500-iteration linear warm-up then poly, batch 16 = 4 GPUs x 4 images.
# Everything else (pipelines, dataset, evaluator, hooks) is mmseg's stock Semantic FPN config.
#
# This file is the hub of configs/seg: the l size and the MLPixer / SRB variants inherit it.
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmsnn'], allow_failed_imports=False)
# checkpoints written atomically (a killed save keeps the earlier ones) and resumable under
# torch >= 2.6, also with mmdet's / mmseg's own tools/train.py
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

# Set the dataset folder with `--cfg-options data_root=...` (the train/test tools propagate it
# to the dataloaders; see configs/seg/README.md).
data_root = 'data/ade/ADEChallengeData2016'

# One norm for every part: backbone, neck and decode head all take `norm_cfg` (BN; the stock
# config's SyncBN in the head alone would make it the odd one out, and SyncBN refuses CPU
# tensors). For synchronised BN across GPUs set `sync_bn = 'torch'` (tools/train.py:
# --cfg-options sync_bn=torch): mmengine converts every BN, backbone, neck and head alike.
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    pretrained=None,  # the stock config's ResNet-50 weights do not apply
    backbone=dict(
        _delete_=True,
        type='MetaSDT',
        arch='s',  # embed dims (32, 64, 128, 192)
        mixer='conv',
        # segmentation taps: channels (C0/2, C0, C1, C3) = (16, 32, 64, 192),
        # strides (2, 4, 8, 16); tap 3 is not used
        out_indices=(0, 1, 2, 4),
        T=1,
        neuron_cfg=None,  # the reference's integer multi-spike quantiser
        drop_path_rate=0.0,  # the reference declares drop-path but never applies it
        norm_cfg=norm_cfg,
        # ImageNet-pretrained weights (reference or mmsnn checkpoint):
        # init_cfg=dict(type='Pretrained', checkpoint='path/to/meta_sdt_s.pth'),
        init_cfg=None),
    neck=dict(
        type='SpikingFPN',
        in_channels=[16, 32, 64, 192],
        out_channels=128,
        num_outs=4,
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='SpikingFPNHead',
        norm_cfg=norm_cfg,
        in_channels=[128, 128, 128, 128],
        in_index=[0, 1, 2, 3],
        feature_strides=[2, 4, 8, 16],  # the real strides of taps (0, 1, 2, 4)
        channels=128,
        num_classes=150))

# mmengine resolved the base's dataloaders from its own data_root; bind them to ours.
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))

# AdamW lr 1e-3, weight decay 0.005, decode head lr x2
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.005),
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=2.)}))
# the stock file's top-level SGD `optimizer` variable, kept in step (optim_wrapper is used)
optimizer = dict(
    _delete_=True, type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.005)

# 1500-iteration linear warm-up, then poly decay to 0 at 160k
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)

# ST-ERF analysis of the backbone during training (mmsnn.engine.hooks.STERFHook), off by
# default: `--cfg-options st_erf.enable=True` (tools/train.py turns this into the hook; with
# other launchers put dict(type='STERFHook', ...) in custom_hooks). Before training, every 16k
# iterations and after training; files under {work_dir}/st_erf/.
st_erf = dict(enable=False, interval=16000, by_epoch=False, num_inputs=2, size=(128, 128))

# the recipe's batch: 16 in total = 4 GPUs x 4 images (train_dataloader.batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=16)
