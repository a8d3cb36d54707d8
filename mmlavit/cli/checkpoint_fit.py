"""Whether a checkpoint fits the model a tool loads it into, before the weights are loaded.

A checkpoint of another arch or another model is an error that says what the
file holds (:func:`describe_checkpoint`) and how to make it fit, instead of a
model that runs with part of its weights random.
"""
import logging
import re
from collections import Counter, OrderedDict
from typing import NamedTuple, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader

from mmlavit.models import LaViT
from mmlavit.models.pretrained import arch_phrase, arch_shapes, shape_of
from mmlavit.utils.checkpoint import CheckpointError, CheckpointMismatchError, strip_prefix, weights_of

#: The tools' option that loads a checkpoint which fits the model only in part.
ALLOW_PARTIAL_OPTION = '--allow-partial-checkpoint'
# mmengine's load_checkpoint strips this from every key first (its default revise_keys).
_WRAPPER_PREFIX = re.compile(r'^module\.')


class LaViTWeights(NamedTuple):
    """The LaViT weights of a state dict (see :func:`find_lavit_weights`)."""
    #: The prefix of their keys: '' in a backbone-only state dict, 'backbone.' in a detector's.
    prefix: str
    #: The shipped arch whose keys and shapes they have exactly, or None.
    arch: Optional[str]
    #: The shipped arch that has the most of their keys with the same shapes.
    closest_arch: str
    #: How many keys of ``closest_arch`` they have, with its shapes.
    matched: int
    #: How many keys ``closest_arch`` has.
    arch_keys: int


def examples(names, limit=3) -> str:
    """At most ``limit`` names, then how many more."""
    names = list(names)
    return ', '.join(names[:limit]) + (f' and {len(names) - limit} more' if len(names) > limit else '')


def find_lavit_weights(state_dict: dict) -> Optional[LaViTWeights]:
    """Finds the LaViT weights of a state dict: their prefix and arch.

    The prefix is the one under which most keys are keys of a shipped arch;
    LaViT weights are found there when most of the keys under it that start
    like LaViT's (``stages.``) are LaViT's.

    Returns:
        LaViTWeights | None: None when the state dict holds no LaViT weights.
    """
    archs = {arch: arch_shapes(LaViT, arch) for arch in LaViT.arch_zoo}
    lavit_keys = set().union(*archs.values())
    roots = {key.split('.')[0] for key in lavit_keys}
    votes = Counter()
    for key in state_dict:
        parts = key.split('.')
        # The longest ending that is a LaViT key: 'backbone.stages.0.norm.weight' -> 'backbone.'.
        start = next((index for index in range(len(parts)) if '.'.join(parts[index:]) in lavit_keys), None)
        if start is not None:
            votes['.'.join(parts[:start]) + '.' if start else ''] += 1
    for prefix, count in votes.most_common():
        weights = {key: shape_of(value) for key, value in strip_prefix(state_dict, prefix).items()
                   if key.split('.')[0] in roots}
        if 2 * count < len(weights):
            continue  # mostly keys no LaViT has: another model's 'stages'
        matched = {arch: sum(weights.get(key) == shape for key, shape in shapes.items())
                   for arch, shapes in archs.items()}
        closest = max(archs, key=lambda arch: (matched[arch], -len(archs[arch])))
        exact = next((arch for arch, shapes in archs.items() if weights == shapes), None)
        return LaViTWeights(prefix, exact, closest, matched[closest], len(archs[closest]))
    return None


def describe_checkpoint(state_dict: dict) -> str:
    """What a state dict holds: its LaViT arch and prefix, or its top-level key prefixes.

    Returns:
        str: e.g. "LaViT arch 't' weights without a prefix (a backbone-only
        checkpoint)", or "no LaViT weights: its 62 keys start with conv1.,
        bn1., layer1., ...".
    """
    found = find_lavit_weights(state_dict)
    if found is None:
        roots = examples(OrderedDict.fromkeys(key.split('.')[0] + '.' for key in state_dict), 8) or 'nothing'
        return f'no LaViT weights: its {len(state_dict)} keys start with {roots}'
    where = (f'under the prefix {found.prefix!r} (a detector\'s, segmentor\'s or classifier\'s checkpoint)'
             if found.prefix else 'without a prefix (a backbone-only checkpoint)')
    if found.arch:
        return f'LaViT arch {found.arch!r} weights {where}'
    return (f'LaViT weights of no shipped arch {where}: the closest, arch {found.closest_arch!r}, has '
            f'{found.matched} of its {found.arch_keys} keys there with their shapes (another arch, or other '
            f'LaViT options such as pool_size or attn_residual)')


def _find_backbone(model: torch.nn.Module) -> Optional[Tuple[str, LaViT]]:
    """The first LaViT of the model and the prefix of its keys ('' when the model is one)."""
    return next(((name + '.' if name else '', module) for name, module in model.named_modules()
                 if isinstance(module, LaViT)), None)


def _as_loaded(model: torch.nn.Module, state_dict: dict) -> dict:
    """The state dict as the model's load pre-hooks complete it (e.g. LaViT's query bias of older checkpoints)."""
    state_dict = OrderedDict(state_dict)
    for name, module in model.named_modules():
        for hook in module._load_state_dict_pre_hooks.values():
            hook(state_dict, name + '.' if name else '', {}, False, [], [], [])
    return state_dict


def _fix(found: Optional[LaViTWeights], backbone, filename: str, rest_only: bool) -> str:
    """How to load a checkpoint that does not fit: the config or conversion that makes it fit."""
    if found is None or backbone is None:
        return 'Pass a checkpoint of this model'
    prefix, module = backbone
    arch = module.arch_name
    if found.arch and arch and found.arch != arch:
        return (f'Use a config whose LaViT has arch {found.arch!r} (--cfg-options model.{prefix}arch={found.arch}) '
                f'or a checkpoint of arch {arch!r}')
    if found.prefix != prefix and not found.prefix:
        return (f'A backbone-only checkpoint initialises the backbone of a model to train (--cfg-options '
                f'model.{prefix}init_cfg.checkpoint={filename}); testing needs a checkpoint of the whole model')
    if found.prefix != prefix:
        load = f' and load that with --cfg-options model.{prefix}init_cfg.checkpoint=BACKBONE.pth' if prefix else ''
        return (f'Extract its LaViT with python tools/convert_checkpoint.py {filename} BACKBONE.pth (it finds '
                f'the prefix {found.prefix!r} itself){load}')
    if rest_only:
        return (f'It holds this LaViT but not the rest of the model (e.g. a classifier\'s checkpoint for a '
                f'detector): to train from its LaViT, pass --cfg-options model.{prefix}init_cfg.checkpoint='
                f'{filename}; to test, use a checkpoint of this model')
    return ('Build the model with the LaViT options the checkpoint was trained with (arch, pool_size, '
            'attn_residual, ...)')


def check_state_dict_fits(model: torch.nn.Module, state_dict: dict, filename: str,
                          allow_partial: bool = False) -> None:
    """:func:`check_checkpoint_fits` for weights already loaded from ``filename``."""
    state_dict = {_WRAPPER_PREFIX.sub('', key): value for key, value in state_dict.items()}
    loaded = _as_loaded(model, state_dict)
    # mmengine ignores a missing BatchNorm step count, and so does this check.
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()
                if not key.endswith('num_batches_tracked')}
    missing = [key for key in expected if key not in loaded]
    misshaped = [key for key in expected if key in loaded and shape_of(loaded[key]) != expected[key]]
    if not missing and not misshaped:
        return
    parts = [f'{len(missing)} are missing from it ({examples(missing)})'] if missing else []
    if misshaped:
        shapes = '; '.join(f'{key}: {expected[key]} in the model, {shape_of(loaded[key])} in the checkpoint'
                           for key in misshaped[:3])
        more = f' and {len(misshaped) - 3} more' if len(misshaped) > 3 else ''
        parts.append(f'{len(misshaped)} have another shape ({shapes}{more})')
    counts = f'{len(expected) - len(missing) - len(misshaped)} of the model\'s {len(expected)} keys match it, ' + \
        ' and '.join(parts)
    backbone = _find_backbone(model)
    holds = f'It holds {describe_checkpoint(state_dict)}; '
    if backbone is None:
        holds += 'the model has no LaViT.'
    elif backbone[0]:
        holds += f'the model\'s LaViT is {arch_phrase(backbone[1])} under the prefix {backbone[0]!r}.'
    else:
        holds += f'the model is a LaViT of {arch_phrase(backbone[1])}.'
    if allow_partial:
        print_log(f'checkpoint {filename} fits the model only in part ({ALLOW_PARTIAL_OPTION}): {counts}; '
                  f'the rest keeps its initial values. {holds}', logger='current', level=logging.WARNING)
        return
    rest_only = backbone is not None and not any(key.startswith(backbone[0]) for key in missing + misshaped)
    found = find_lavit_weights(state_dict)
    raise CheckpointMismatchError(
        f'checkpoint {filename} does not fit the model: {counts}.\n  {holds}\n'
        f'  {_fix(found, backbone, filename, rest_only)}. Or pass {ALLOW_PARTIAL_OPTION} to load only what fits.')


def check_checkpoint_fits(model: torch.nn.Module, filename: str, allow_partial: bool = False) -> None:
    """Checks that a checkpoint has every weight of the model, with its shape.

    The file is loaded as mmengine loads it (``CheckpointLoader``, so URLs and
    model-zoo names work, loaded safely; a leading 'module.' is stripped from
    its keys). Keys the model does not have (an EMA copy, a head the model
    lacks) are fine. A wrapper (DDP, a test-time augmentation model) is
    checked by the model it wraps.

    Args:
        model (nn.Module): The model the checkpoint is for.
        filename (str): The checkpoint: a path, a URL or a model-zoo name.
        allow_partial (bool): Log what does not fit as a warning instead of
            raising. Default: False.

    Raises:
        CheckpointMismatchError: A weight of the model is missing from the
            checkpoint or has another shape there. The message counts the
            keys that match, names a few that do not, says what the
            checkpoint holds and how to make it fit.
        CheckpointError: The file is refused, incomplete or no checkpoint, or
            has weights that are not finite (a diverged run's).
    """
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f'checkpoint {filename} holds a {type(checkpoint).__name__}, not weights')
    weights = weights_of(checkpoint)
    check_state_dict_fits(model, weights, filename, allow_partial)
    tensors = [value for value in weights.values() if torch.is_tensor(value) and value.is_floating_point()]
    not_finite = sum(not torch.isfinite(value).all() for value in tensors)
    if not_finite:
        raise CheckpointError(f'checkpoint {filename} has {not_finite} of its {len(tensors)} weight tensors not '
                              f'finite (NaN or infinite): it comes from a run that diverged. Use an earlier '
                              f'checkpoint of that run, or train again with a lower learning rate.')
