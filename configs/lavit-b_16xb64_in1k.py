# LaViT-B ImageNet-1k classification; everything else as configs/lavit-s_16xb64_in1k.py.
_base_ = './lavit-s_16xb64_in1k.py'
model = dict(backbone=dict(arch='b', drop_path_rate=0.3))
