# UperNet with a LaViT-T backbone; everything else as configs/upernet_lavit_s_ade20k.py.
_base_ = './upernet_lavit_s_ade20k.py'
model = dict(backbone=dict(arch='t'))
