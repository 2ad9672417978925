# Meta-SDT-l (conv mixer) + spiking Semantic FPN on ADE20K: the recipe of sdt_s_ade20k.py
# with the l backbone (embed dims (64, 128, 256, 360)) and a 256-wide neck.
_base_ = './sdt_s_ade20k.py'

model = dict(
    backbone=dict(arch='l'),
    # taps (0, 1, 2, 4) of Meta-SDT-l: channels (32, 64, 128, 360)
    neck=dict(in_channels=[32, 64, 128, 360], out_channels=256),
    decode_head=dict(in_channels=[256, 256, 256, 256]))
