# CPU demo with the SRB mixer: sdt_demo.py (= sdt_s_ade20k.py + demo data/schedule) with
# mixer='srb', i.e. sdt_srb_s_ade20k.py on the demo data.
#   python -m mmsnn.datasets.demo_ade --out data/demo_ade
#   python tools/train.py configs/seg/demo/sdt_srb_demo.py
_base_ = './sdt_demo.py'

model = dict(backbone=dict(mixer='srb'))
