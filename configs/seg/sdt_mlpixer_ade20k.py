# Meta-SDT with the MLPixer mixer + spiking Semantic FPN on ADE20K, at the default size (s).
_base_ = './sdt_mlpixer_s_ade20k.py'
