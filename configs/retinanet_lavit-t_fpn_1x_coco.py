# RetinaNet with a LaViT-T backbone; everything else as configs/retinanet_lavit-s_fpn_1x_coco.py.
_base_ = './retinanet_lavit-s_fpn_1x_coco.py'
model = dict(backbone=dict(arch='t'))
