# RetinaNet with a LaViT-S backbone and FPN, COCO 2017, mmdet's 3x multi-scale recipe
# (retinanet_r50_fpn_ms-640-800-3x_coco.py, on common/ms_3x_coco.py: shorter side 640-800, longer side
# <= 1333, the training set repeated 3 times in each of 12 epochs, steps at 9 and 11; 8 GPUs x 2 images),
# with the backbone, FPN and optimizer of configs/_base_/retinanet_lavit.py (AdamW lr 1e-4, weight decay
# 0.05) and the 1x config's test-time augmentation (tools/test.py --tta).
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_ms-640-800-3x_coco.py',
    'mmdet::retinanet/retinanet_tta.py',
    './_base_/retinanet_lavit.py',
]
model = _base_.retinanet_lavit_model
optim_wrapper = _base_.retinanet_lavit_optim_wrapper
# The total batch the learning rate is set for (tools/train.py --auto-scale-lr scales it to yours).
auto_scale_lr = dict(enable=False, base_batch_size=16)
