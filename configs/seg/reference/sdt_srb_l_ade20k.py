# Released reference spiking Semantic FPN, Meta-SDT-l, SRB mixer: ../sdt_srb_l_ade20k.py
# with the reference's neck (conv bias, then BN; _base_/reference_heads.py; README,
# "Released checkpoints"). Convert the released checkpoint first:
#   python tools/convert_reference.py RELEASED.pth converted.pth --task seg
_base_ = ['../sdt_srb_l_ade20k.py', './_base_/reference_heads.py']
model = _base_.reference_model
