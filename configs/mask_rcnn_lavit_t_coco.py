# configs/mask-rcnn_lavit-t_fpn_1x_coco.py under its short name.
_base_ = './mask-rcnn_lavit-t_fpn_1x_coco.py'
