"""How LaViT's diagonality-preserving loss reaches mmengine's loss dict.

The backbone keeps the standard contract (it returns only features) and holds
``dp_weight * L_DP`` after a training forward. A forward hook on the whole
model adds it to the loss dict that ``mode='loss'`` returns, as ``loss_dp``,
so mmengine's ``parse_losses`` sums it into the back-propagated total and logs
it; ``dp_sym`` and ``dp_diag``, the unweighted L_sym and L_diag of the LA
layers in percent, go into the dict beside it to be logged, not trained. The hook sits
on the model itself, inside any DDP wrapper, and works for any mmdet
detector, mmseg segmentor or mmpretrain classifier without a subclass: a
user's config only adds ``custom_hooks = [dict(type='mmlavit.DPLossHook')]``.
"""
import inspect
from typing import List, Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from mmlavit.models import LaViT
from mmlavit.registry import HOOKS

DP_LOSS_KEY = 'loss_dp'
#: The unweighted parts of the DP loss, L_sym and L_diag, in percent (so that mmengine's 4 decimals show
#: them from the start of training, where they are of the order of 1e-4 to 1e-3): log variables, since mmengine's
#: parse_losses sums only the keys that contain 'loss'.
DP_TERM_KEYS = ('dp_sym', 'dp_diag')


def find_lavits(model: nn.Module) -> List[LaViT]:
    """All LaViT modules inside ``model``."""
    return [module for module in model.modules() if isinstance(module, LaViT)]


def _forward_mode(signature: inspect.Signature, args, kwargs) -> Optional[str]:
    """The ``mode`` a model forward was called with, by keyword or by position (None if not given)."""
    if 'mode' in kwargs:
        return kwargs['mode']
    try:
        return signature.bind_partial(*args, **kwargs).arguments.get('mode')
    except TypeError:
        return None


class DPLossCollection:
    """The hooks that sum LaViT's DP terms over one ``mode='loss'`` forward and add them as ``loss_dp``.

    Made by :func:`attach_dp_loss`; :meth:`remove` detaches it again.
    """

    def __init__(self, model: nn.Module, backbones: List[LaViT]):
        self.backbones = backbones
        self._signature = inspect.signature(model.forward)
        self._handles = [
            model.register_forward_pre_hook(self._start, with_kwargs=True),
            model.register_forward_hook(self._add, with_kwargs=True),
        ]

    def _start(self, model, args, kwargs):
        if _forward_mode(self._signature, args, kwargs) == 'loss':
            for backbone in self.backbones:
                backbone.start_dp_collection()

    def _add(self, model, args, kwargs, output):
        if _forward_mode(self._signature, args, kwargs) != 'loss' or not isinstance(output, dict):
            return None
        terms = []
        for backbone in self.backbones:
            dp_loss, backbone_terms = backbone.pop_dp_loss(return_terms=True)
            if dp_loss is not None:
                output[DP_LOSS_KEY] = output[DP_LOSS_KEY] + dp_loss if DP_LOSS_KEY in output else dp_loss
            if backbone_terms is not None:
                terms.append(backbone_terms)
        if terms:
            output.update({key: 100 * sum(backbone_terms[key] for backbone_terms in terms) / len(terms)
                           for key in DP_TERM_KEYS})
        return output

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def attach_dp_loss(model: nn.Module) -> DPLossCollection:
    """Makes ``model(..., mode='loss')`` return ``loss_dp`` next to its own losses.

    ``loss_dp`` is the sum of ``dp_weight * L_DP`` over every forward of every
    LaViT inside the model that ran with gradients during that one model
    forward: two views, or the branches of a semi-supervised detector, add
    their terms as they add their task losses; a teacher run under
    ``torch.no_grad()`` adds none. ``dp_sym`` and ``dp_diag`` beside it are
    L_sym and L_diag in percent, unweighted and detached, averaged over the
    LA layers and those forwards (absent when no LA layer's grid held the
    P x P cells); for one forward, ``loss_dp = dp_weight * (dp_sym +
    dp_diag) / 100``.

    Args:
        model (nn.Module): An mmdet/mmseg/mmpretrain model with a LaViT
            backbone (a DDP wrapper is unwrapped).

    Returns:
        DPLossCollection: ``.remove()`` detaches it again.
    """
    if is_model_wrapper(model):
        model = model.module
    backbones = find_lavits(model)
    if not backbones:
        raise ValueError(f'{type(model).__name__} has no LaViT module, so it has no loss_dp to collect')
    return DPLossCollection(model, backbones)


@HOOKS.register_module()
class DPLossHook(Hook):
    """Puts LaViT's ``dp_weight * L_DP`` into the training loss dict as ``loss_dp``.

    The sum over the LaViT forwards with gradients of each training step (see
    :func:`attach_dp_loss`). Add ``custom_hooks = [dict(type='mmlavit.DPLossHook')]`` to a config. The
    weight is the backbone's ``dp_weight`` (0 turns the loss off).
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        self._handle = attach_dp_loss(runner.model)
        print_log('DPLossHook: LaViT\'s diagonality-preserving loss is trained as loss_dp',
                  logger='current')

    def after_train(self, runner) -> None:
        self._handle.remove()
