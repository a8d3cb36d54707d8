# ImageNet-style pretraining of LaViT-T on CPU on the generated shapes set
# (mmlavit.cli.demo_data.make_imagenet_shapes: 72x72 images of one circle, square or triangle in the ImageNet
# folder layout). The recipe is configs/lavit-t_16xb64_in1k.py's (AdamW, cosine with warm-up, Mixup/CutMix,
# label smoothing, loss_dp); only what small images and a short run need is cut: 64x64 crops without
# RandAugment and random erasing, batch size, epochs. Its checkpoints initialise the backbones of the
# Mask R-CNN and UperNet configs (model.backbone.init_cfg.checkpoint=PATH).
_base_ = '../lavit-t_16xb64_in1k.py'

data_root = 'data/shapes_imagenet'
metainfo = dict(classes=('circle', 'square', 'triangle'))
crop_size = 64
max_epochs = 10

data_preprocessor = dict(num_classes=3)
model = dict(backbone=dict(drop_path_rate=0.), head=dict(num_classes=3))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=crop_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=72, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1),
]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_epochs))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # one process
