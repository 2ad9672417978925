# Meta-SDT-s + SRB backbone with mmdet's stock (non-spiking) FPN, RPN and RoI heads, for
# users who only want the spiking backbone. Strides, data and schedule as sdt_srb_s_coco.py.
_base_ = './sdt_srb_s_coco.py'

pretrained = None  # ImageNet checkpoint of the backbone; None trains from scratch

model = dict(
    backbone=dict(
        # _delete_: replace the base's init_cfg=None
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)
        if pretrained else None),
    neck=dict(type='FPN'),
    rpn_head=dict(type='RPNHead'),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_head=dict(type='Shared2FCBBoxHead'),
        mask_head=dict(type='FCNMaskHead')))
