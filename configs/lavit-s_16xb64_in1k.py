# LaViT-S ImageNet-1k classification, 224x224, 300 epochs, 16 GPUs x 64 images: the DeiT-style recipe
# mmpretrain uses for Swin and PVT (AdamW lr 1e-3 at batch 1024, weight decay 0.05, cosine decay after a
# 20-epoch warm-up, RandAugment, random erasing, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, gradient
# clipping at 5).
# Its checkpoints initialise the backbones of the Mask R-CNN, RetinaNet, UperNet and Semantic FPN configs:
# --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/lavit-s_16xb64_in1k/epoch_300.pth
# (tools/convert_checkpoint.py makes a smaller backbone-only file that loads the same way).
_base_ = [
    'mmpretrain::_base_/models/swin_transformer/tiny_224.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './_base_/lavit.py',
]
# The classifier needs only the last stage; its init_cfg (no checkpoint) trains from scratch.
model = dict(
    backbone=dict(_base_.lavit_backbone, out_indices=(3, )),
    head=dict(in_channels=512))

optim_wrapper = dict(
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(custom_keys=_base_.lavit_no_decay))
# The total batch the learning rate is set for (tools/train.py --auto-scale-lr scales it to yours).
auto_scale_lr = dict(enable=False, base_batch_size=1024)
