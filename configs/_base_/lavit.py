# What every LaViT config shares: the plugin import, the hook that trains LaViT's
# diagonality-preserving loss as loss_dp (weight: model.backbone.dp_weight), and the LaViT
# parameters that get no weight decay (norms, the LA transforms, the residual's LayerScale).
custom_imports = dict(imports=['mmlavit'], allow_failed_imports=False)
custom_hooks = [dict(type='mmlavit.DPLossHook')]
lavit_no_decay = {
    'norm': dict(decay_mult=0.),
    'theta': dict(decay_mult=0.),
    'psi_weight': dict(decay_mult=0.),
    'gamma': dict(decay_mult=0.),
}
