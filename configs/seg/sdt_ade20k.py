# Meta-SDT (conv mixer) + spiking Semantic FPN on ADE20K at the default size (s).
_base_ = './sdt_s_ade20k.py'
