# Spiking Mask R-CNN 1x, Meta-SDT-l backbone with the baseline conv mixer.
_base_ = './_base_/sdt_mask-rcnn_ms-crop-1x_coco.py'

# ImageNet checkpoint of the backbone (reference or mmsnn layout), e.g.
# 'checkpoints/meta_sdt_l_conv_in1k.pth'; None trains from scratch.
pretrained = None

model = dict(
    backbone=dict(
        arch='l',
        mixer='conv',
        # _delete_: replace the base's init_cfg=None
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)
        if pretrained else None),
    neck=dict(in_channels=[64, 128, 256, 360]))
