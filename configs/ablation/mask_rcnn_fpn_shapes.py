# The detector, data and schedule of tools/ablate.py, which swaps the backbone (and the FPN's
# in_channels) per variant: Mask R-CNN + FPN with the demo's narrow heads, trained from scratch on the
# generated 160x160 shapes set (mmlavit.cli.demo_data.make_coco_shapes: 300 training and 80 validation
# images), 600 iterations of batch 4, AdamW lr 4e-4 with weight decay 0.05, a 50-iteration linear
# warm-up then cosine decay, gradient clipping at 5, random flip only; bbox and segm mAP on the
# validation split after the last iteration.
_base_ = '../demo/mask_rcnn_lavit_t_shapes.py'

data_root = 'data/shapes_ablation/'
image_size = (160, 160)
max_iters = 600
warmup_iters = 50

# The demo's pipelines, resized to 160x160.
train_pipeline = _base_.train_pipeline
test_pipeline = _base_.test_pipeline
for pipeline in (train_pipeline, test_pipeline):
    [resize] = [step for step in pipeline if step['type'] == 'Resize']
    resize['scale'] = image_size
del pipeline, resize
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
# The demo leaves validation out; here it runs once, after the last iteration.
val_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=_base_.metainfo,
                 ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='CocoMetric', metric=['bbox', 'segm'], format_only=False,
                     ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# LaViT's default drop path (the demo turns it off), so that this config trained as it is equals the
# lavit-t variant; tools/ablate.py replaces the whole backbone per variant.
model = dict(backbone=dict(drop_path_rate=0.1))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(_delete_=True, type='ValLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', T_max=max_iters - warmup_iters, eta_min=0., by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
optim_wrapper = dict(optimizer=dict(lr=4e-4, weight_decay=0.05), clip_grad=dict(max_norm=5., norm_type=2))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
