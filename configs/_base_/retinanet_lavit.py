# What the LaViT RetinaNet configs share beside configs/_base_/lavit.py: the backbone with only the stages
# the FPN uses (as mmdet's Swin RetinaNet does, so every parameter is used in every step and DDP needs no
# find_unused_parameters), the FPN on its channels, and the AdamW optimizer (lr 1e-4, weight decay 0.05)
# for 8 GPUs x 2 images.
_base_ = './lavit.py'
retinanet_lavit_model = dict(
    backbone=dict(_base_.lavit_backbone, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[128, 320, 512], start_level=0, add_extra_convs='on_input', num_outs=5))
retinanet_lavit_optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=_base_.lavit_no_decay),
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
