"""How LaViT's diagonality-preserving loss reaches mmengine's loss dict.

The backbone keeps the standard contract (it returns only features) and holds
``dp_weight * L_DP`` after a training forward. A forward hook on the whole
model adds it to the loss dict that ``mode='loss'`` returns, as ``loss_dp``,
so mmengine's ``parse_losses`` sums it into the back-propagated total and logs
it. The hook sits on the model itself, inside any DDP wrapper, and works for
any mmdet detector, mmseg segmentor or mmpretrain classifier without a
subclass: a user's config only adds ``custom_hooks = [dict(type='mmlavit.DPLossHook')]``.
"""
from functools import partial
from typing import List

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn
from torch.utils.hooks import RemovableHandle

from mmlavit.models import LaViT
from mmlavit.registry import HOOKS

DP_LOSS_KEY = 'loss_dp'


def find_lavits(model: nn.Module) -> List[LaViT]:
    """All LaViT modules inside ``model``."""
    return [module for module in model.modules() if isinstance(module, LaViT)]


def _add_dp_loss(backbones, model, args, kwargs, output):
    if kwargs.get('mode') != 'loss' or not isinstance(output, dict):
        return None
    for backbone in backbones:
        dp_loss = backbone.pop_dp_loss()
        if dp_loss is not None:
            output[DP_LOSS_KEY] = output[DP_LOSS_KEY] + dp_loss if DP_LOSS_KEY in output else dp_loss
    return output


def attach_dp_loss(model: nn.Module) -> RemovableHandle:
    """Makes ``model(..., mode='loss')`` return ``loss_dp`` next to its own losses.

    Args:
        model (nn.Module): An mmdet/mmseg/mmpretrain model with a LaViT
            backbone (a DDP wrapper is unwrapped).

    Returns:
        RemovableHandle: ``handle.remove()`` detaches it again.
    """
    if is_model_wrapper(model):
        model = model.module
    backbones = find_lavits(model)
    if not backbones:
        raise ValueError(f'{type(model).__name__} has no LaViT module, so it has no loss_dp to collect')
    return model.register_forward_hook(partial(_add_dp_loss, backbones), with_kwargs=True)


@HOOKS.register_module()
class DPLossHook(Hook):
    """Puts LaViT's ``dp_weight * L_DP`` into the training loss dict as ``loss_dp``.

    Add ``custom_hooks = [dict(type='mmlavit.DPLossHook')]`` to a config. The
    weight is the backbone's ``dp_weight`` (0 turns the loss off).
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        self._handle = attach_dp_loss(runner.model)
        print_log('DPLossHook: LaViT\'s diagonality-preserving loss is trained as loss_dp',
                  logger='current')

    def after_train(self, runner) -> None:
        self._handle.remove()
