# The schedule and narrow heads of mask_rcnn_fpn_shapes.py (600 iterations of batch 4, AdamW lr 4e-4, cosine,
# 160x160, LaViT-T from scratch with the DPLossHook) on the generated set of overlapping shapes on textured
# backgrounds, each annotated by its visible region (mmlavit.cli.demo_data.make_coco_occluded_shapes:
# ellipses, triangles and stars; 300 training and 80 validation images).
_base_ = './mask_rcnn_fpn_shapes.py'

data_root = 'data/occluded_shapes_ablation/'
metainfo = dict(classes=('ellipse', 'triangle', 'star'), palette=[(220, 20, 60), (0, 128, 255), (0, 200, 80)])
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
