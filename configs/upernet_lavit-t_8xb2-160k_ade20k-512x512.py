# UperNet with a LaViT-T backbone; everything else as configs/upernet_lavit-s_8xb2-160k_ade20k-512x512.py.
_base_ = './upernet_lavit-s_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(arch='t'))
