# Mask R-CNN with a LaViT-B backbone; everything else as configs/mask_rcnn_lavit_s_coco.py.
_base_ = './mask_rcnn_lavit_s_coco.py'
model = dict(backbone=dict(arch='b', drop_path_rate=0.3))
