# CPU demo: configs/seg/spikformer_ade20k.py shrunk (embed_dims 64, T=2) on the generated demo
# dataset; data, neck/head widths and schedule are those of sdt_demo.py (_base_).
#
#   python -m mmsnn.datasets.demo_ade --out data/demo_ade
#   python tools/train.py configs/seg/demo/spikformer_demo.py
_base_ = './sdt_demo.py'

model = dict(
    backbone=dict(
        _delete_=True, type='Spikformer', arch=None, embed_dims=64, depth=2, num_heads=4, T=2,
        out_indices=(0, 1, 2, 4), init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64]))
