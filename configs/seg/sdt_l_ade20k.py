# Meta-SDT-l (conv mixer) + spiking Semantic FPN on ADE20K: the recipe of sdt_s_ade20k.py
# with the l backbone (embed dims (64, 128, 256, 360)), a 256-wide neck and a 256-wide decode
# head (the reference's l recipe; s uses 128 for both).
_base_ = './sdt_s_ade20k.py'

model = dict(
    backbone=dict(arch='l'),
    # taps (0, 1, 2, 4) of Meta-SDT-l: channels (32, 64, 128, 360)
    neck=dict(in_channels=[32, 64, 128, 360], out_channels=256),
    decode_head=dict(in_channels=[256, 256, 256, 256], channels=256))
