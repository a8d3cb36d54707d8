from .errors import LaViTConfigError, LaViTInputError
from .lavit import LaViT

__all__ = ['LaViT', 'LaViTConfigError', 'LaViTInputError']
