from .dp_loss_hook import DPLossHook, attach_dp_loss

__all__ = ['DPLossHook', 'attach_dp_loss']
