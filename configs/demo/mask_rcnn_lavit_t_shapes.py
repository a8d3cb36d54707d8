# `make demo`: Mask R-CNN (FPN) with LaViT-T, trained from scratch on CPU on the generated shapes set
# (mmlavit.cli.demo_data.make_coco_shapes: 128x128 images, circles/squares/triangles, COCO format).
# Only what small images with few objects do not need is cut: image size, proposal counts,
# RoI samples and FPN width. Seeded, so that `make demo` repeats its figures.
_base_ = '../mask-rcnn_lavit-t_fpn_1x_coco.py'

data_root = 'data/shapes_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'),
                palette=[(220, 20, 60), (0, 128, 255), (0, 200, 80)])
image_size = (128, 128)
fpn_channels = 64

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(drop_path_rate=0.),
    neck=dict(out_channels=fpn_channels),
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=fpn_channels),
        mask_head=dict(in_channels=fpn_channels, conv_out_channels=fpn_channels, num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(sampler=dict(num=64), mask_size=28)),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', metric=['bbox', 'segm'])
# The demo evaluates once, with tools/test.py, after training.
val_dataloader = val_evaluator = val_cfg = None
# No test-time augmentation: the inherited one is at COCO scales (up to 2000x1200), not 128x128.
tta_model = tta_pipeline = None

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6, 7], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=4)  # one process
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
