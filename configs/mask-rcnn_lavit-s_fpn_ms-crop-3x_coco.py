# Mask R-CNN with a LaViT-S backbone and FPN, COCO 2017, 3x schedule (36 epochs, steps at 27 and 33) with
# multi-scale training: mmdet's Swin-T recipe mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py, inherited as it
# is (shorter side 480-800, longer side <= 1333, half the time after a random 384-600 crop; AdamW lr 1e-4,
# weight decay 0.05; 8 GPUs x 2 images), with the backbone swapped for LaViT-S.
# Test-time augmentation (tools/test.py --tta): 1333x800, 666x400 and 2000x1200, each with and without a
# horizontal flip (mmdet's retinanet_tta.py); the views' boxes merged by NMS as mmdet's DetTTAModel
# merges them, each kept box with the mask of the view that predicted it (mmlavit/instance_tta.py).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    'mmdet::retinanet/retinanet_tta.py',
    './_base_/lavit.py',
]
model = dict(
    backbone=_base_.lavit_backbone,
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, custom_keys=_base_.lavit_no_decay))
auto_scale_lr = dict(enable=False, base_batch_size=16)
# mmlavit.instance_tta imports mmdet's models, which `import mmlavit` alone does not.
custom_imports = dict(imports=[*_base_.custom_imports.imports, 'mmlavit.instance_tta'])
tta_model = dict(type='mmlavit.InstanceSegTTAModel')
tta_pipeline = _base_.tta_pipeline
# The ground-truth masks too, as the test pipeline loads them.
tta_pipeline[1].transforms[2] = [dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
