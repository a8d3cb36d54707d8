from .dp_loss_hook import DPLossHook, attach_dp_loss
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ['DPLossHook', 'LayerDecayOptimWrapperConstructor', 'attach_dp_loss']
