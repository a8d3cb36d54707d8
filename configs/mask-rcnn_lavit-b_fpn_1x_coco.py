# Mask R-CNN with a LaViT-B backbone; everything else as configs/mask-rcnn_lavit-s_fpn_1x_coco.py.
_base_ = './mask-rcnn_lavit-s_fpn_1x_coco.py'
model = dict(backbone=dict(arch='b', drop_path_rate=0.3))
