from .dp_collection import collect_dp_loss
from .errors import LaViTConfigError, LaViTInputError
from .lavit import LaViT

__all__ = ['LaViT', 'LaViTConfigError', 'LaViTInputError', 'collect_dp_loss']
