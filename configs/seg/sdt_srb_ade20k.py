# The front door for segmentation: Meta-SDT (size s) with the SRB (splash-and-reconstruct)
# mixer + spiking Semantic FPN on ADE20K, 160k iterations.
#   python tools/train.py configs/seg/sdt_srb_ade20k.py
#   python tools/test.py  configs/seg/sdt_srb_ade20k.py work_dirs/sdt_srb_ade20k/iter_160000.pth
# The same model and schedule as sdt_srb_s_ade20k.py (sdt_srb_l_ade20k.py: size l).
_base_ = './sdt_srb_s_ade20k.py'
