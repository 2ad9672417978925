# Toy config for the tools' tests: a tiny MetaSDT classifier on random tensors, 4 iterations,
# a checkpoint every 2. Needs tests/data on PYTHONPATH (for mmsnn_toy).
default_scope = 'mmdet'
custom_imports = dict(imports=['mmsnn', 'mmsnn_toy'], allow_failed_imports=False)

model = dict(
    type='ToySpikeClassifier',
    num_classes=3,
    backbone=dict(type='MetaSDT', embed_dims=(8, 16, 16, 16), num_heads=2, out_indices=(4, )))

train_dataset = dict(type='ToySpikeDataset', num_samples=8, img_size=32)
test_dataset = dict(type='ToySpikeDataset', num_samples=4, img_size=32, seed=1)
train_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'), dataset=train_dataset)
val_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'), dataset=test_dataset)
test_dataloader = val_dataloader
val_evaluator = dict(type='ToyAccuracy')
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4)]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='ToyRankMarkerHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
randomness = dict(seed=0)
load_from = None
resume = False
