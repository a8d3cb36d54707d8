# The schedule of mask_rcnn_fpn_shapes.py (600 iterations of batch 4, AdamW lr 4e-4, cosine, 160x160,
# LaViT-T from scratch with the DPLossHook) with mmdet's standard Mask R-CNN (mask-rcnn_r50_fpn.py: 256-channel
# FPN, RPN and RoI heads, its samplers and proposal counts), on the generated set of overlapping shapes on
# textured backgrounds, each annotated by its visible region (mmlavit.cli.demo_data.make_coco_occluded_shapes:
# ellipses, triangles and stars; 300 training and 80 validation images).
_base_ = './mask_rcnn_fpn_shapes.py'

data_root = 'data/occluded_shapes_ablation/'
metainfo = dict(classes=('ellipse', 'triangle', 'star'), palette=[(220, 20, 60), (0, 128, 255), (0, 200, 80)])
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# mask-rcnn_r50_fpn.py's widths and proposal settings, where the demo's heads narrow them (mmengine merges a
# base's dicts key by key, and two bases may not both hold `model`, so the narrowed keys are set back here).
fpn_channels = 256
model = dict(
    neck=dict(out_channels=fpn_channels),
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=1024),
        mask_roi_extractor=dict(out_channels=fpn_channels),
        mask_head=dict(in_channels=fpn_channels, conv_out_channels=fpn_channels)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=256)),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000),
        rcnn=dict(sampler=dict(num=512))),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000),
        rcnn=dict(max_per_img=100)))
