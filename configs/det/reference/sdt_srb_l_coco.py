# Released reference spiking Mask R-CNN, Meta-SDT-l, SRB mixer: ../sdt_srb_l_coco.py
# with the reference's strides and head units (_base_/reference_heads.py; README,
# "Released checkpoints"). Convert the released checkpoint first:
#   python tools/convert_reference.py RELEASED.pth converted.pth --task det
_base_ = ['../sdt_srb_l_coco.py', './_base_/reference_heads.py']
model = _base_.reference_model
