# Meta-SDT-s with the MLPixer mixer in the early stages (taps 0-2)
# + spiking Semantic FPN on ADE20K; recipe of sdt_s_ade20k.py.
_base_ = './sdt_s_ade20k.py'

model = dict(backbone=dict(mixer='mlpixer'))
