# CPU demo: configs/det/spikformer_coco.py shrunk (embed_dims 64, T=2) on the generated demo
# dataset; data, neck/head widths and schedule are those of sdt_srb_s_demo.py (_base_).
#
#   python -m mmsnn.datasets.demo_coco --out data/demo_coco
#   python tools/train.py configs/det/demo/spikformer_demo.py
_base_ = './sdt_srb_s_demo.py'

model = dict(
    backbone=dict(
        _delete_=True, type='Spikformer', arch=None, embed_dims=64, depth=2, num_heads=4, T=2,
        out_indices=(1, 2, 3, 4), init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 64]))
