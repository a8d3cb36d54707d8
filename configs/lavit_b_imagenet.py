# LaViT-B ImageNet-1k classification; everything else as configs/lavit_s_imagenet.py.
_base_ = './lavit_s_imagenet.py'
model = dict(backbone=dict(arch='b', drop_path_rate=0.3))
