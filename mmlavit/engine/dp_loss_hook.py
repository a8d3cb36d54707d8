"""How LaViT's diagonality-preserving loss reaches mmengine's loss dict (for any mmdet detector, mmseg segmentor
or mmpretrain classifier, without a subclass), and the hook that also stops a run that diverges."""
import inspect
import math
import os.path as osp
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from mmlavit.models import LaViT
from mmlavit.models.dp_collection import close_dp_collection, open_dp_collection
from mmlavit.registry import HOOKS

#: The decimals of mmengine's log with the hook: L_sym starts training from scratch near 1e-4.
LOG_DIGITS = 6
_FIXES = ('Lower the learning rate (optim_wrapper.optimizer.lr), clip the gradients (optim_wrapper.clip_grad='
          'dict(max_norm=1.0)), or train in float32 (without --amp)')


class TrainingDivergedError(ValueError):
    """A training run whose losses or weights are no longer finite."""


def _forward_mode(signature: inspect.Signature, args, kwargs) -> Optional[str]:
    """The ``mode`` a model forward was called with, by keyword or by position (None if not given)."""
    if 'mode' in kwargs:
        return kwargs['mode']
    try:
        return signature.bind_partial(*args, **kwargs).arguments.get('mode')
    except TypeError:
        return None


class DPLossAttachment:
    """The hooks of :func:`attach_dp_loss` on one model; :meth:`remove` detaches them."""

    def __init__(self, model: nn.Module):
        self._signature = inspect.signature(model.forward)
        self._open = []
        self._handles = [model.register_forward_pre_hook(self._open_collection, with_kwargs=True),
                         model.register_forward_hook(self._add_losses, with_kwargs=True, always_call=True)]

    def _open_collection(self, model, args, kwargs):
        if _forward_mode(self._signature, args, kwargs) == 'loss':
            self._open.append(open_dp_collection())

    def _add_losses(self, model, args, kwargs, output):
        if _forward_mode(self._signature, args, kwargs) != 'loss' or not self._open:
            return None
        collection = self._open.pop()
        close_dp_collection(collection)
        if not isinstance(output, dict) or collection.loss is None:
            return None
        output['loss_dp'] = output['loss_dp'] + collection.loss if 'loss_dp' in output else collection.loss
        output.update(collection.logged_terms() or {})
        return output

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def attach_dp_loss(model: nn.Module) -> DPLossAttachment:
    """Makes ``model(..., mode='loss')`` return ``loss_dp`` next to its own losses, with hooks on the model (inside
    any DDP wrapper) that open a DP loss collection around the forward.

    ``loss_dp`` is the sum of ``dp_weight * L_DP`` over every LaViT forward with gradients inside that one model
    forward (two views or branches add their terms as they add their task losses; a teacher under
    ``torch.no_grad()`` adds none), which mmengine's ``parse_losses`` sums into the trained total. ``dp_sym`` and
    ``dp_diag`` beside it, logged and not trained, are L_sym and L_diag averaged over the LA layers and those
    forwards (absent when no LA layer's grid held the P x P cells): for one forward ``loss_dp = dp_weight *
    (dp_sym + dp_diag)``.

    Args:
        model (nn.Module): An mmdet/mmseg/mmpretrain model with a LaViT
            backbone (a DDP wrapper is unwrapped).
    """
    model = model.module if is_model_wrapper(model) else model
    if not any(isinstance(module, LaViT) for module in model.modules()):
        raise ValueError(f'{type(model).__name__} has no LaViT module, so it has no loss_dp to collect')
    return DPLossAttachment(model)


@HOOKS.register_module()
class DPLossHook(Hook):
    """Puts LaViT's ``dp_weight * L_DP`` into the training loss dict as ``loss_dp`` (see :func:`attach_dp_loss`).

    Add ``custom_hooks = [dict(type='mmlavit.DPLossHook')]`` to a config; the weight is the backbone's
    ``dp_weight`` (0 turns the loss off). The log shows at least :data:`LOG_DIGITS` decimals (mmengine's
    ``log_processor.num_digits``), so that ``dp_sym`` shows from the start. It also stops a run that diverges
    (:class:`TrainingDivergedError`): after an iteration whose logged losses are not all finite, and before a
    checkpoint with non-finite weights is saved, so that the last checkpoint stays the last finite one.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        self._attachment = attach_dp_loss(runner.model)
        log_processor = getattr(runner, 'log_processor', None)
        if log_processor is not None:
            log_processor.num_digits = max(log_processor.num_digits, LOG_DIGITS)
        print_log('DPLossHook: LaViT\'s diagonality-preserving loss is trained as loss_dp', logger='current')

    def after_train(self, runner) -> None:
        self._attachment.remove()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        not_finite = [key for key, value in (outputs or {}).items() if not math.isfinite(float(value))]
        if not_finite:
            raise TrainingDivergedError(
                f'training diverged at iteration {runner.iter + 1}: {", ".join(not_finite)} '
                f'{"is" if len(not_finite) == 1 else "are"} not finite. {_FIXES}. {_last_checkpoint(runner)}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        weights = checkpoint.get('state_dict', {})
        not_finite = sum(torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()
                         for value in weights.values())
        if not_finite:
            raise TrainingDivergedError(
                f'training diverged by iteration {runner.iter}: {not_finite} of the model\'s {len(weights)} weight '
                f'tensors are not finite, and they were not saved. {_FIXES}. {_last_checkpoint(runner)}')


def _last_checkpoint(runner) -> str:
    record = osp.join(runner.work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return 'No checkpoint of this run was saved.'
    with open(record) as f:
        return f'The last checkpoint, {f.read().strip()}, is from before.'

