# RetinaNet with a LaViT-B backbone; everything else as configs/retinanet_lavit-s_fpn_ms-3x_coco.py.
_base_ = './retinanet_lavit-s_fpn_ms-3x_coco.py'
model = dict(backbone=dict(arch='b', drop_path_rate=0.3))
