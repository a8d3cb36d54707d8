# Semantic FPN with a LaViT-B backbone; everything else as configs/fpn_lavit-s_8xb4-80k_ade20k-512x512.py.
_base_ = './fpn_lavit-s_8xb4-80k_ade20k-512x512.py'
model = dict(backbone=dict(arch='b', drop_path_rate=0.3))
