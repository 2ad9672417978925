# Meta-SDT with the SRB (splash-and-reconstruct) mixer + spiking Semantic FPN on ADE20K,
# at the default size (s).
_base_ = './sdt_srb_s_ade20k.py'
