# Semantic FPN with a LaViT-T backbone; everything else as configs/fpn_lavit-s_8xb4-80k_ade20k-512x512.py.
_base_ = './fpn_lavit-s_8xb4-80k_ade20k-512x512.py'
model = dict(backbone=dict(arch='t'))
