# Spiking Mask R-CNN 1x on COCO with the Spike-driven Transformer v1 8-384 backbone.
# Everything but the backbone is the Meta-SDT recipe (_base_): taps (1, 2, 3, 4) of every
# mmsnn spiking transformer have strides (4, 8, 16, 16) like Meta-SDT's, so the spiking FPN,
# anchors and RoI strides carry over. T=4 real LIF steps; the taps are averaged over time.
_base_ = './_base_/sdt_mask-rcnn_ms-crop-1x_coco.py'

# ImageNet checkpoint of the reference ({'model': state_dict}, loaded through the converter
# and the key filter beside the model), e.g. 'checkpoints/sdtv1_in1k.pth'; None trains
# from scratch.
pretrained = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='SDTv1',
        arch='8-384',
        T=4,
        # taps (1, 2, 3, 4): channels (E/4, E/2, E, E), strides (4, 8, 16, 16)
        out_indices=(1, 2, 3, 4),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained) if pretrained else None),
    neck=dict(in_channels=[96, 192, 384, 384]))
