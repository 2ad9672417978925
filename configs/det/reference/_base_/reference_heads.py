# What the released spiking Mask R-CNN checkpoints were trained with, where it differs from
# mmsnn's clean configs (every other setting is the clean config's). Only for running or
# fine-tuning those checkpoints; new models should use the clean configs.
# Merged into `model` by the configs of this folder: `model = _base_.reference_model`.
reference_model = dict(
    # the neck clips to 0..4 in training but to 0..1 (binary spikes) in eval; its convs have
    # a bias and no BN
    neck=dict(
        with_bn=False,
        neuron_cfg=dict(type='MultiSpikeQuantizer', max_value=4, norm=1.0, eval_max_value=1)),
    # anchors declared at strides 4..64 (base sizes = strides) although taps 3 and 4 both
    # have stride 16: the released weights were trained on these anchor positions
    rpn_head=dict(
        with_bn=False,
        anchor_generator=dict(strides=[4, 8, 16, 32, 64], base_sizes=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=[4, 8, 16, 32]),
        # no quantiser between the second shared fc and fc_cls / fc_reg
        bbox_head=dict(spike_before_predictors=False),
        mask_roi_extractor=dict(featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(with_bn=False)))
