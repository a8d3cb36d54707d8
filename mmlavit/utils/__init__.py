from .checkpoint import load_backbone_state_dict, register_trusted_local_loader, strip_prefix, weights_of

__all__ = ['load_backbone_state_dict', 'register_trusted_local_loader', 'strip_prefix', 'weights_of']
