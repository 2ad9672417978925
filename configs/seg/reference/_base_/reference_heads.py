# What the released spiking Semantic FPN checkpoints were trained with, where it differs from
# mmsnn's clean configs: the neck's convs have a bias, followed by BN (mmsnn's have no bias,
# which BN makes redundant). Everything else, the decode head included, is the clean config's.
# Merged into `model` by the configs of this folder: `model = _base_.reference_model`.
reference_model = dict(neck=dict(conv_bias=True))
