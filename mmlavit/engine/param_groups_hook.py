"""Param groups that ``torch.compile`` can trace through an optimizer step."""
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict

from mmlavit.registry import HOOKS


@HOOKS.register_module()
class PlainParamGroupsHook(Hook):
    """Hands each optimizer its param groups as plain dicts, for mmengine's ``compile=True``.

    With a ``paramwise_cfg`` (every LaViT config has one) mmengine's constructor makes each param group a
    ``ConfigDict``, on which dynamo fails when the Runner compiles ``train_step`` with the optimizer step. The
    groups become plain dicts with the same entries before the first iteration, after the optimizer is built and
    resumed; nothing else changes.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        wrappers = runner.optim_wrapper
        wrappers = wrappers.values() if isinstance(wrappers, OptimWrapperDict) else [wrappers]
        for wrapper in wrappers:
            groups = wrapper.optimizer.param_groups
            groups[:] = [dict(group) for group in groups]
