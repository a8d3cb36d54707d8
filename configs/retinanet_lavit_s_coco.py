# configs/retinanet_lavit-s_fpn_1x_coco.py under its short name.
_base_ = './retinanet_lavit-s_fpn_1x_coco.py'
