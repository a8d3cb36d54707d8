# UperNet with a LaViT-B backbone; everything else as configs/upernet_lavit_s_ade20k.py.
_base_ = './upernet_lavit_s_ade20k.py'
model = dict(backbone=dict(arch='b', drop_path_rate=0.3))
