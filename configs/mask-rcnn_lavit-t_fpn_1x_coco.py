# Mask R-CNN with a LaViT-T backbone; everything else as configs/mask-rcnn_lavit-s_fpn_1x_coco.py.
_base_ = './mask-rcnn_lavit-s_fpn_1x_coco.py'
model = dict(backbone=dict(arch='t'))
