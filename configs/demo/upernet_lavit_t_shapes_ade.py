# `make demo-seg`: UperNet with LaViT-T, trained from scratch on CPU on the generated shapes set
# (mmlavit.cli.demo_data.make_ade_shapes: 120x120 images in the ADEChallengeData2016 layout; annotation 0,
# the shapes' outlines, is "other" and ignored as in ADE20K; classes background/circle/square/triangle).
# Only what small images need is cut: crop size, head widths, iterations; training from scratch this
# briefly needs a higher learning rate. Seeded, so that `make demo-seg` repeats its figures.
_base_ = '../upernet_lavit-t_8xb2-160k_ade20k-512x512.py'

data_root = 'data/shapes_ade/ADEChallengeData2016'
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[(128, 128, 128), (220, 20, 60), (0, 128, 255), (0, 200, 80)])
image_size = 120
crop_size = (96, 96)
max_iters = 1500

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(drop_path_rate=0.),
    decode_head=dict(channels=128, num_classes=4),
    auxiliary_head=dict(channels=64, num_classes=4))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(4 * image_size, image_size), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
               seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(**dataset, data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(**dataset,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.01))
auto_scale_lr = dict(enable=False, base_batch_size=8)  # one process
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(by_epoch=False, interval=max_iters))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
