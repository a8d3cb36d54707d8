# Semantic FPN with a LaViT-S backbone, ADE20K, 512x512 crops, 80k iterations, 8 GPUs x 4 images: the
# PVT/PVTv2 recipe (AdamW lr 1e-4, weight decay 1e-4, poly decay with power 0.9) on mmseg's FPN model
# (_base_/models/fpn_r50.py: FPN to 256 channels, FPNHead). Test-time augmentation (tools/test.py --tta):
# mmseg's SegTTAModel over 0.5-1.75 times the image size, with and without a horizontal flip.
# ImageNet-pretrained weights: --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (see configs/_base_/lavit.py); without one the backbone trains from scratch and the log says so.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    './_base_/lavit.py',
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=_base_.lavit_backbone,
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    paramwise_cfg=dict(custom_keys=_base_.lavit_no_decay))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)]

train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# The total batch the learning rate is set for (tools/train.py --auto-scale-lr scales it to yours).
auto_scale_lr = dict(enable=False, base_batch_size=32)
