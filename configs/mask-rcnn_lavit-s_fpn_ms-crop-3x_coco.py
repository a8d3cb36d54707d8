# Mask R-CNN with a LaViT-S backbone and FPN, COCO 2017, 3x schedule (36 epochs, steps at 27 and 33) with
# multi-scale training: mmdet's Swin-T recipe mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py, inherited as it
# is (shorter side 480-800, longer side <= 1333, half the time after a random 384-600 crop; AdamW lr 1e-4,
# weight decay 0.05; 8 GPUs x 2 images), with the backbone swapped for LaViT-S.
# No test-time augmentation: mmdet's DetTTAModel merges boxes only, not instance masks.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    './_base_/lavit.py',
]
model = dict(
    backbone=_base_.lavit_backbone,
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, custom_keys=_base_.lavit_no_decay))
auto_scale_lr = dict(enable=False, base_batch_size=16)
