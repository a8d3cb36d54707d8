# Mask R-CNN with a LaViT-T backbone; everything else as configs/mask_rcnn_lavit_s_coco.py.
_base_ = './mask_rcnn_lavit_s_coco.py'
model = dict(backbone=dict(arch='t'))
