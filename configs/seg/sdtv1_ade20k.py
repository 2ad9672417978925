# Spike-driven Transformer v1 8-384 + spiking Semantic FPN on ADE20K, 512x512, 160k iterations.
# Everything but the backbone is the Meta-SDT recipe (_base_): taps (0, 1, 2, 4) of every
# mmsnn spiking transformer have strides (2, 4, 8, 16) like Meta-SDT's. T=4 real LIF steps;
# the taps are averaged over time.
_base_ = './sdt_s_ade20k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SDTv1',
        arch='8-384',
        T=4,
        # taps (0, 1, 2, 4): channels (E/8, E/4, E/2, E), strides (2, 4, 8, 16)
        out_indices=(0, 1, 2, 4),
        # ImageNet checkpoint of the reference (through the converter and the key filter):
        # init_cfg=dict(type='Pretrained', checkpoint='path/to/sdtv1_in1k.pth'),
        init_cfg=None),
    neck=dict(in_channels=[48, 96, 192, 384]))
