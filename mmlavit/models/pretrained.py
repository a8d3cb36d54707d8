"""The weights a ``Pretrained`` init_cfg loads into LaViT, and the shipped arch that weights are."""
import functools
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional

from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from mmlavit.utils.checkpoint import CheckpointMismatchError, strip_prefix, weights_of


@functools.lru_cache(maxsize=None)
def arch_shapes(lavit_type: type, arch: str) -> Dict[str, tuple]:
    """The keys and shapes of ``lavit_type(arch=arch)``'s state dict."""
    return {key: tuple(value.shape) for key, value in lavit_type(arch=arch).state_dict().items()}


def shape_of(value) -> Optional[tuple]:
    return tuple(value.shape) if hasattr(value, 'shape') else None


def matching_arch(state_dict: dict, lavit_type: type) -> Optional[str]:
    """The shipped arch whose keys and shapes a backbone-only state dict has exactly, or None."""
    shapes = {key: shape_of(value) for key, value in state_dict.items()}
    return next((arch for arch in lavit_type.arch_zoo if arch_shapes(lavit_type, arch) == shapes), None)


def arch_phrase(backbone) -> str:
    """'arch NAME' for a shipped arch, else 'a custom arch'."""
    return f'arch {backbone.arch_name!r}' if backbone.arch_name else 'a custom arch'


def load_backbone_state_dict(init_cfg: dict, backbone: nn.Module) -> dict:
    """Reads the backbone weights a ``Pretrained`` init_cfg points to.

    Accepts a plain state dict or an mmengine checkpoint (``state_dict`` or ``model`` entry), loaded by mmengine's
    ``CheckpointLoader`` (paths, URLs and model-zoo names, loaded safely), and strips ``init_cfg['prefix']`` (e.g.
    'backbone.') when given; a backbone-only checkpoint loads under any prefix. A checkpoint that has only part of
    the backbone's weights loads that part.

    Args:
        init_cfg (dict): ``dict(type='Pretrained', checkpoint=..., prefix=...)``.
        backbone (LaViT): The backbone the weights are for.

    Returns:
        dict: The state dict to load (missing and unexpected keys are left for the caller to log).

    Raises:
        FileNotFoundError: The checkpoint file does not exist.
        CheckpointError: The file is refused, incomplete or no checkpoint.
        CheckpointMismatchError: No key carries the prefix, none matches the backbone, or keys both have differ in
            shape (another arch's weights).
    """
    path, name = init_cfg['checkpoint'], type(backbone).__name__
    if '://' not in str(path) and not osp.isfile(osp.expanduser(str(path))):
        raise FileNotFoundError(
            f'the pretrained checkpoint {path} named in {name}\'s init_cfg does not exist. Fix the path (e.g. '
            f'--cfg-options model.backbone.init_cfg.checkpoint=PATH) or remove init_cfg to train from scratch.')
    state_dict = weights_of(CheckpointLoader.load_checkpoint(path, map_location='cpu'))
    own = {key: tuple(value.shape) for key, value in backbone.state_dict().items()}
    starts = list(OrderedDict.fromkeys('.'.join(key.split('.')[:2]) + '.' for key in state_dict))[:5]
    prefix = init_cfg.get('prefix') or ''
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        stripped = strip_prefix(state_dict, prefix)
        # A backbone-only checkpoint (tools/convert_checkpoint.py) has no prefix to strip.
        if not stripped and not own.keys() & state_dict.keys():
            raise CheckpointMismatchError(
                f'no key of {path} starts with the prefix {prefix!r} given in init_cfg; its keys start with '
                f'{starts}. Set init_cfg.prefix to the one that holds the backbone (or drop it for a backbone-only '
                f'checkpoint).')
        state_dict, prefix = (stripped, prefix) if stripped else (state_dict, '')
    if not own.keys() & state_dict.keys():
        raise CheckpointMismatchError(
            f'none of the {len(state_dict)} weights in {path} (prefix {prefix!r}) matches {name}: its keys start '
            f'with {starts}; the model expects keys like {sorted(own)[:3]}. Check init_cfg.prefix, or convert the '
            f'checkpoint with tools/convert_checkpoint.py.')
    misshaped = [key for key, shape in own.items() if key in state_dict and shape_of(state_dict[key]) != shape]
    if misshaped:
        arch, built = matching_arch(state_dict, type(backbone)), arch_phrase(backbone)
        holds = (f'LaViT arch {arch!r} weights' if arch else 'LaViT weights of no shipped arch') + (
            f' under the prefix {prefix!r}' if prefix else ' without a prefix')
        shapes = '; '.join(f'{key}: {shape_of(state_dict[key])} in the checkpoint, {own[key]} in the backbone'
                           for key in misshaped[:3])
        fix = (f'Set the config\'s arch to the checkpoint\'s (--cfg-options model.backbone.arch={arch})' if arch
               else 'Build the backbone with the options the checkpoint was trained with')
        raise CheckpointMismatchError(
            f'checkpoint {path} does not fit {name}: {len(misshaped)} of the weights both have differ in shape '
            f'({shapes}); the checkpoint holds {holds}, the config builds {built}.\n  {fix}, or use a checkpoint '
            f'of {built}.')
    return state_dict
