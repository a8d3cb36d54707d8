# RetinaNet with a LaViT-S backbone and FPN, COCO 2017, mmdet's 3x multi-scale recipe
# (retinanet_r50_fpn_ms-640-800-3x_coco.py, on common/ms_3x_coco.py: shorter side 640-800, longer side
# <= 1333, the training set repeated 3 times in each of 12 epochs, steps at 9 and 11; 8 GPUs x 2 images),
# with the backbone, FPN and optimizer of configs/retinanet_lavit-s_fpn_1x_coco.py (AdamW lr 1e-4,
# weight decay 0.05) and its test-time augmentation (tools/test.py --tta).
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_ms-640-800-3x_coco.py',
    'mmdet::retinanet/retinanet_tta.py',
    './_base_/lavit.py',
]
model = dict(
    backbone=dict(_base_.lavit_backbone, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[128, 320, 512], start_level=0, add_extra_convs='on_input', num_outs=5))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=_base_.lavit_no_decay),
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=16)
