# CPU demo with the MLPixer mixer: sdt_demo.py with mixer='mlpixer', i.e.
# sdt_mlpixer_s_ade20k.py on the demo data.
_base_ = './sdt_demo.py'

model = dict(backbone=dict(mixer='mlpixer'))
