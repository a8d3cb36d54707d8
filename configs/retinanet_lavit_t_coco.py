# RetinaNet with a LaViT-T backbone; everything else as configs/retinanet_lavit_s_coco.py.
_base_ = './retinanet_lavit_s_coco.py'
model = dict(backbone=dict(arch='t'))
