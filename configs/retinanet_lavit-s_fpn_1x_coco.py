# RetinaNet with a LaViT-S backbone and FPN, COCO 2017, 1x schedule, 1333x800, 8 GPUs x 2 images, AdamW
# lr 1e-4, weight decay 0.05. Test-time augmentation (tools/test.py --tta): mmdet's DetTTAModel over
# 1333x800, 666x400 and 2000x1200, each with and without a horizontal flip (mmdet's retinanet_tta.py).
# Backbone stages, FPN and optimizer: configs/_base_/retinanet_lavit.py.
# ImageNet-pretrained weights: --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (see configs/_base_/lavit.py).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
    './_base_/retinanet_lavit.py',
]
model = _base_.retinanet_lavit_model
optim_wrapper = _base_.retinanet_lavit_optim_wrapper
# The total batch the learning rate is set for (tools/train.py --auto-scale-lr scales it to yours).
auto_scale_lr = dict(enable=False, base_batch_size=16)
