# Default size (s) of sdt_*_coco: the same model and schedule as sdt_s_coco.py.
_base_ = './sdt_s_coco.py'
