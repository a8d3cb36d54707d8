"""mmlavit: the Less-Attention Vision Transformer (LaViT) backbone for OpenMMLab.

Importing the package registers ``mmlavit.LaViT`` (also as plain ``LaViT``)
and ``mmlavit.DPLossHook``, makes mmengine's checkpoint loaders (local
files, URLs and model-zoo names) load what mmengine, mmdet, mmseg and mmpretrain write without running
code from the file (see :mod:`mmlavit.utils.checkpoint`), and teaches mmengine's FLOP counter the
products LaViT's attention runs (:mod:`mmlavit.models.flop_handles`).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS

from .engine import DPLossHook, attach_dp_loss
from .models import LaViT, collect_dp_loss
from .models.flop_handles import register_flop_handles
from .utils.checkpoint import register_safe_checkpoint_loaders

__version__ = '0.1.0'

# Plain type='LaViT' / 'DPLossHook' (after custom_imports) resolve through the root registries
# that mmdet's, mmseg's and mmpretrain's registries fall back to.
MMENGINE_MODELS.register_module(module=LaViT)
MMENGINE_HOOKS.register_module(module=DPLossHook)
register_safe_checkpoint_loaders()
register_flop_handles()

__all__ = ['LaViT', 'DPLossHook', 'attach_dp_loss', 'collect_dp_loss', '__version__']
