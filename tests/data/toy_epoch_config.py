# The toy config by epochs: 3 epochs of 4 iterations, a checkpoint after each epoch (the
# interruption tests kill and resume it).
_base_ = './toy_config.py'

train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=3, val_interval=1000)
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=12)]
default_hooks = dict(checkpoint=dict(interval=1, by_epoch=True))
log_processor = dict(by_epoch=True)
