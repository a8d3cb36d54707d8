# Mask R-CNN with a LaViT-S backbone and FPN, COCO 2017, 1x schedule, 1333x800, 8 GPUs x 2 images
# (mmdet's Swin-T recipe: AdamW lr 1e-4, weight decay 0.05, 1000-iteration warm-up, steps at epochs 8 and 11).
# ImageNet-pretrained weights: --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (see configs/_base_/lavit.py); without one the backbone trains from scratch and the log says so.
# Test-time augmentation (tools/test.py --tta): 1333x800, 666x400 and 2000x1200, each with and without a
# horizontal flip (mmdet's retinanet_tta.py); the views' boxes merged by NMS as mmdet's DetTTAModel
# merges them, each kept box with the mask of the view that predicted it (mmlavit/instance_tta.py).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
    './_base_/lavit.py',
]
model = dict(
    backbone=_base_.lavit_backbone,
    neck=dict(in_channels=[64, 128, 320, 512]))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(custom_keys=_base_.lavit_no_decay),
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
# The total batch the learning rate is set for (tools/train.py --auto-scale-lr scales it to yours).
auto_scale_lr = dict(enable=False, base_batch_size=16)
# mmlavit.instance_tta imports mmdet's models, which `import mmlavit` alone does not.
custom_imports = dict(imports=[*_base_.custom_imports.imports, 'mmlavit.instance_tta'])
tta_model = dict(type='mmlavit.InstanceSegTTAModel')
tta_pipeline = _base_.tta_pipeline
# The ground-truth masks too, as the test pipeline loads them.
tta_pipeline[1].transforms[2] = [dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
