from .lavit import LaViT

__all__ = ['LaViT']
