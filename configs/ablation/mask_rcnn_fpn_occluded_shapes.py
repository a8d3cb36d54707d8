# mask_rcnn_fpn_occluded_shapes_narrow.py (the occluded shapes set, the shapes schedule) with mmdet's
# standard Mask R-CNN (mask-rcnn_r50_fpn.py: 256-channel FPN, RPN and RoI heads, its samplers and proposal
# counts).
_base_ = './mask_rcnn_fpn_occluded_shapes_narrow.py'

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
