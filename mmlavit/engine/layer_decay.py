"""Layer-wise learning-rate decay for detectors, segmentors and classifiers with a LaViT backbone.

Each parameter's learning rate is scaled by ``layer_decay_rate ** (num_layers - layer_id - 1)``, with
``(layer_id, num_layers)`` from the backbone's ``get_layer_depth`` (mmpretrain's contract, which :class:`mmlavit.LaViT`
follows): the neck and heads keep the base rate, the backbone's last layer gets one factor of the rate, the stem the
most. Unlike mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` (same rates), this asks the model's ``backbone``
when the model (a detector or segmentor) has no ``get_layer_depth``, and keeps the ``lr_mult`` of ``custom_keys``.
"""
from functools import partial
from typing import Callable, List, Optional, Tuple

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmlavit.registry import OPTIM_WRAPPER_CONSTRUCTORS


def layer_depth_function(model: nn.Module) -> Callable[[str], Tuple[int, int]]:
    """``name -> (layer_id, num_layers)``: ``model.get_layer_depth``, else the backbone's with prefix ``'backbone.'``.

    Raises:
        TypeError: Neither the model nor its backbone has ``get_layer_depth``.
    """
    if hasattr(model, 'get_layer_depth'):
        return model.get_layer_depth
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and hasattr(backbone, 'get_layer_depth'):
        return partial(backbone.get_layer_depth, prefix='backbone.')
    owner = type(model if backbone is None else backbone).__name__
    raise TypeError(f'layer-wise learning-rate decay needs a backbone that tells each parameter\'s depth '
                    f'(get_layer_depth, as mmlavit.LaViT has): {owner} has none. Use such a backbone, or '
                    f'mmengine\'s DefaultOptimWrapperConstructor without decay.')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor with layer-wise learning-rate decay.

    Every rule of :class:`mmengine.optim.DefaultOptimWrapperConstructor` applies first (``custom_keys`` with
    ``lr_mult`` and ``decay_mult``, ``norm_decay_mult``, frozen parameters left out, ...), then the scaling by depth.

    Example:
        >>> optim_wrapper = dict(constructor='mmlavit.LayerDecayOptimWrapperConstructor',
        ...     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05), paramwise_cfg=dict(layer_decay_rate=0.9))

    Args:
        optim_wrapper_cfg (dict): As for the default constructor.
        paramwise_cfg (dict, optional): As for the default constructor, plus ``layer_decay_rate`` (float, default 1.0).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.layer_decay_rate = paramwise_cfg.pop('layer_decay_rate', 1.0)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        """Adds the parameter groups of ``module`` (the default rules), then scales their rates by depth."""
        super().add_params(params, module, prefix, **kwargs)
        if prefix:  # a child, reached through the default constructor's recursion
            return
        depth_of = layer_depth_function(module)
        names = {id(param): name for name, param in module.named_parameters()}
        scales = {}
        for group in params:
            layer_id, num_layers = depth_of(names[id(group['params'][0])])
            scales[layer_id] = self.layer_decay_rate**(num_layers - layer_id - 1)
            group['lr'] = group.get('lr', self.base_lr) * scales[layer_id]
        summary = ', '.join(f'{layer_id}: {scale:.3g}' for layer_id, scale in sorted(scales.items()))
        print_log(f'layer-wise lr decay {self.layer_decay_rate}, lr scale per layer depth: {summary}',
                  logger='current')
