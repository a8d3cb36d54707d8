from .dp_loss_hook import DPLossHook, attach_dp_loss
from .layer_decay import LayerDecayOptimWrapperConstructor
from .param_groups_hook import PlainParamGroupsHook

__all__ = ['DPLossHook', 'LayerDecayOptimWrapperConstructor', 'PlainParamGroupsHook', 'attach_dp_loss']
