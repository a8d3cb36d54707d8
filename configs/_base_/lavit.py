# What every LaViT config shares: the plugin import, the hook that trains LaViT's
# diagonality-preserving loss as loss_dp (weight: model.backbone.dp_weight), and the LaViT parameters
# that get no weight decay (norms, the LA transforms, the residual's LayerScale).
# With mmengine's compile=True, add dict(type='mmlavit.PlainParamGroupsHook') to custom_hooks
# (docs/performance.md, "torch.compile").
custom_imports = dict(imports=['mmlavit'], allow_failed_imports=False)
custom_hooks = [dict(type='mmlavit.DPLossHook')]
lavit_no_decay = {
    'norm': dict(decay_mult=0.),
    'theta': dict(decay_mult=0.),
    'psi_weight': dict(decay_mult=0.),
    'gamma': dict(decay_mult=0.),
}
# The backbone of the detection and segmentation configs: LaViT-S with all four stages out. A
# Pretrained init_cfg without a checkpoint trains from scratch (and logs so); give one with
# --cfg-options model.backbone.init_cfg.checkpoint=PATH (an mmpretrain LaViT checkpoint, e.g. from
# configs/lavit-s_16xb64_in1k.py, or a backbone-only one from tools/convert_checkpoint.py).
lavit_backbone = dict(
    _delete_=True,
    type='mmlavit.LaViT',
    arch='s',
    drop_path_rate=0.1,
    dp_weight=0.1,
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.'))
