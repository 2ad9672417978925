# Default size (s) of sdt_mlpixer_*_coco: the same model and schedule as sdt_mlpixer_s_coco.py.
_base_ = './sdt_mlpixer_s_coco.py'
