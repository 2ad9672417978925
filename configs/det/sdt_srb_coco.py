# The project's front door: the default spiking Mask R-CNN 1x on COCO, Meta-SDT (size s) with
# the SRB (splash-and-reconstruct) mixer, spiking FPN / RPN / RoI heads.
#   python tools/train.py configs/det/sdt_srb_coco.py
#   python tools/test.py  configs/det/sdt_srb_coco.py work_dirs/sdt_srb_coco/epoch_12.pth
# The same model and schedule as sdt_srb_s_coco.py (sdt_srb_l_coco.py: size l).
_base_ = './sdt_srb_s_coco.py'
