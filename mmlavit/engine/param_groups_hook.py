"""Param groups that ``torch.compile`` can trace through an optimizer step."""
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict

from mmlavit.registry import HOOKS


@HOOKS.register_module()
class PlainParamGroupsHook(Hook):
    """Hands each optimizer its param groups as plain dicts.

    mmengine's ``DefaultOptimWrapperConstructor`` builds the optimizer from a
    config, so with a ``paramwise_cfg`` (every LaViT config has one, for the
    parameters without weight decay) each param group is an mmengine
    ``ConfigDict``. With ``compile=True`` the Runner compiles ``train_step``,
    optimizer step included, and dynamo fails on such a group (torch 2.13:
    "'UserDefinedDictVariable' object has no attribute 'items'"). The groups
    are replaced by plain dicts with the same entries before the first
    iteration, after the Runner has built the optimizer and resumed its state;
    nothing else changes, so the hook is harmless without ``compile``.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        wrappers = runner.optim_wrapper
        wrappers = wrappers.values() if isinstance(wrappers, OptimWrapperDict) else [wrappers]
        for wrapper in wrappers:
            groups = wrapper.optimizer.param_groups
            groups[:] = [dict(group) for group in groups]
