# RetinaNet with a LaViT-S backbone and FPN, COCO 2017, 1x schedule, 1333x800, 8 GPUs x 2 images, AdamW
# lr 1e-4, weight decay 0.05. Test-time augmentation (tools/test.py --tta): mmdet's DetTTAModel over
# 1333x800, 666x400 and 2000x1200, each with and without a horizontal flip (mmdet's retinanet_tta.py).
# Only the stages the FPN uses are output (as mmdet's Swin RetinaNet does), so every parameter is
# used in every step and DDP needs no find_unused_parameters.
# ImageNet-pretrained weights: --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (see configs/_base_/lavit.py).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
    './_base_/lavit.py',
]
model = dict(
    backbone=dict(_base_.lavit_backbone, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[128, 320, 512], start_level=0, add_extra_convs='on_input', num_outs=5))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=_base_.lavit_no_decay),
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
# The total batch the learning rate is set for (tools/train.py --auto-scale-lr scales it to yours).
auto_scale_lr = dict(enable=False, base_batch_size=16)
