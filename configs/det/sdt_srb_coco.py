# Default size (s) of sdt_srb_*_coco: the same model and schedule as sdt_srb_s_coco.py.
_base_ = './sdt_srb_s_coco.py'
