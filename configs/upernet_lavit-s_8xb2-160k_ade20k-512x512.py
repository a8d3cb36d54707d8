# UperNet with a LaViT-S backbone and an auxiliary FCN head, ADE20K, 512x512 crops, 160k iterations,
# 8 GPUs x 2 images: mmseg's Swin-T UperNet recipe (AdamW lr 6e-5, weight decay 0.01, 1500-iteration
# linear warm-up, then poly decay). Test-time augmentation (tools/test.py --tta): mmseg's SegTTAModel over
# 0.5, 0.75, 1.0, 1.25, 1.5 and 1.75 times the image size, each with and without a horizontal flip
# (mmseg's _base_/datasets/ade20k.py).
# ImageNet-pretrained weights: --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (see configs/_base_/lavit.py); without one the backbone trains from scratch and the log says so.
# Testing runs on whole images of any size; for sliding windows add --cfg-options
# model.test_cfg.mode=slide model.test_cfg.crop_size="(512,512)" model.test_cfg.stride="(341,341)"
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './_base_/lavit.py',
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=_base_.lavit_backbone,
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys=_base_.lavit_no_decay))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]

train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# The total batch the learning rate is set for (tools/train.py --auto-scale-lr scales it to yours).
auto_scale_lr = dict(enable=False, base_batch_size=16)
