from .dp_loss import DPLossHook, attach_dp_loss

__all__ = ['DPLossHook', 'attach_dp_loss']
