"""What a checkpoint holds, and whether it fits the model it is loaded into.

:func:`describe_checkpoint` says which shipped LaViT arch a state dict's LaViT
weights are and under which prefix, from the keys and shapes of
``LaViT(arch=...)`` itself. :func:`check_checkpoint_fits` compares a
checkpoint with a model before the weights are loaded, so that a checkpoint of
another arch or another model is an error that says so instead of a model
that runs with part of its weights random. :func:`load_backbone_state_dict`
is the ``Pretrained`` init_cfg of the backbone.
"""
import functools
import logging
import os.path as osp
import re
from collections import Counter, OrderedDict
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import CheckpointError, strip_prefix, weights_of

#: The tools' option that loads a checkpoint which fits the model only in part.
ALLOW_PARTIAL_OPTION = '--allow-partial-checkpoint'
# mmengine's load_checkpoint strips this from every key first (its default revise_keys).
_WRAPPER_PREFIX = re.compile(r'^module\.')
_EXAMPLES = 3


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint whose weights do not fit the model: keys it lacks, or shapes that differ.

    A ``ValueError`` as well, as the backbone's init_cfg has always raised for
    a checkpoint that matches nothing.
    """


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


def _lavit():
    from mmlavit.models import LaViT  # imported here: mmlavit.models imports this package
    return LaViT


@functools.lru_cache(maxsize=None)
def _arch_shapes(arch: str) -> Dict[str, tuple]:
    """The keys and shapes of ``LaViT(arch=arch)``'s state dict."""
    return {key: tuple(value.shape) for key, value in _lavit()(arch=arch).state_dict().items()}


def _shape(value) -> Optional[tuple]:
    return tuple(value.shape) if hasattr(value, 'shape') else None


def _examples(names, limit=_EXAMPLES) -> str:
    names = list(names)
    return ', '.join(names[:limit]) + (f' and {len(names) - limit} more' if len(names) > limit else '')


def matching_arch(state_dict: dict) -> Optional[str]:
    """The shipped LaViT arch whose keys and shapes a backbone-only state dict has exactly, or None."""
    shapes = {key: _shape(value) for key, value in state_dict.items()}
    return next((arch for arch in _lavit().arch_zoo if _arch_shapes(arch) == shapes), None)


def find_lavit_weights(state_dict: dict) -> Optional[LaViTWeights]:
    """Finds the LaViT weights of a state dict: their prefix and arch.

    The prefix is the one under which most keys are keys of a shipped arch;
    LaViT weights are found there when most of the keys under it that start
    like LaViT's (``stages.``) are LaViT's.

    Args:
        state_dict (dict): Weights, e.g. :func:`~mmlavit.utils.weights_of` a checkpoint.

    Returns:
        LaViTWeights | None: None when the state dict holds no LaViT weights.
    """
    archs = list(_lavit().arch_zoo)
    lavit_keys = set().union(*(_arch_shapes(arch) for arch in archs))
    roots = {key.split('.')[0] for key in lavit_keys}
    votes = Counter()
    for key in state_dict:
        parts = key.split('.')
        # The longest ending that is a LaViT key: 'backbone.stages.0.norm.weight' -> 'backbone.'.
        start = next((index for index in range(len(parts)) if '.'.join(parts[index:]) in lavit_keys), None)
        if start is not None:
            votes['.'.join(parts[:start]) + '.' if start else ''] += 1
    for prefix, count in votes.most_common():
        weights = {key: _shape(value) for key, value in strip_prefix(state_dict, prefix).items()
                   if key.split('.')[0] in roots}
        if 2 * count < len(weights):
            continue  # mostly keys no LaViT has: another model's 'stages'
        matched = {arch: sum(weights.get(key) == shape for key, shape in _arch_shapes(arch).items())
                   for arch in archs}
        closest = max(archs, key=lambda arch: (matched[arch], -len(_arch_shapes(arch))))
        exact = next((arch for arch in archs if weights == _arch_shapes(arch)), None)
        return LaViTWeights(prefix, exact, closest, matched[closest], len(_arch_shapes(closest)))
    return None


def _top_level_prefixes(state_dict: dict, limit=8) -> str:
    roots = list(OrderedDict.fromkeys(key.split('.')[0] + '.' for key in state_dict))
    return _examples(roots, limit) or 'nothing'


def describe_checkpoint(state_dict: dict) -> str:
    """What a state dict holds: its LaViT arch and prefix, or its top-level key prefixes.

    Returns:
        str: e.g. "LaViT arch 't' weights without a prefix (a backbone-only
        checkpoint)", or "no LaViT weights: its 62 keys start with conv1.,
        bn1., layer1., ...".
    """
    found = find_lavit_weights(state_dict)
    if found is None:
        return f'no LaViT weights: its {len(state_dict)} keys start with {_top_level_prefixes(state_dict)}'
    where = (f'under the prefix {found.prefix!r} (a detector\'s, segmentor\'s or classifier\'s checkpoint)'
             if found.prefix else 'without a prefix (a backbone-only checkpoint)')
    if found.arch:
        return f'LaViT arch {found.arch!r} weights {where}'
    return (f'LaViT weights of no shipped arch {where}: the closest, arch {found.closest_arch!r}, has '
            f'{found.matched} of its {found.arch_keys} keys there with their shapes (another arch, or other '
            f'LaViT options such as pool_size or attn_residual)')


def _arch_name(backbone) -> Optional[str]:
    settings = {key: list(value) for key, value in backbone.arch_settings.items()}
    return next((arch for arch, zoo in _lavit().arch_zoo.items() if settings == zoo), None)


def _arch_phrase(backbone) -> str:
    arch = _arch_name(backbone)
    return f'arch {arch!r}' if arch else 'a custom arch'


def _find_backbone(model: torch.nn.Module) -> Optional[Tuple[str, torch.nn.Module]]:
    """The first LaViT of the model and the prefix of its keys ('' when the model is one)."""
    LaViT = _lavit()
    return next(((name + '.' if name else '', module) for name, module in model.named_modules()
                 if isinstance(module, LaViT)), None)


def _as_loaded(model: torch.nn.Module, state_dict: dict) -> dict:
    """The state dict as the model's load pre-hooks complete it (e.g. LaViT's query bias of older checkpoints)."""
    state_dict = OrderedDict(state_dict)
    for name, module in model.named_modules():
        for hook in module._load_state_dict_pre_hooks.values():
            hook(state_dict, name + '.' if name else '', {}, False, [], [], [])
    return state_dict


def _mismatch_counts(matched, total, missing, misshaped, model_shapes, state_dict) -> str:
    parts = []
    if missing:
        parts.append(f'{len(missing)} are missing from it ({_examples(missing)})')
    if misshaped:
        shapes = '; '.join(f'{key}: {model_shapes[key]} in the model, {_shape(state_dict[key])} in the checkpoint'
                           for key in misshaped[:_EXAMPLES])
        more = f' and {len(misshaped) - _EXAMPLES} more' if len(misshaped) > _EXAMPLES else ''
        parts.append(f'{len(misshaped)} have another shape ({shapes}{more})')
    return f'{matched} of the model\'s {total} keys match it, ' + ' and '.join(parts)


def _fix(found: Optional[LaViTWeights], backbone, filename: str, rest_only: bool) -> str:
    """How to load a checkpoint that does not fit: the config or conversion that makes it fit."""
    if found is None or backbone is None:
        return 'Pass a checkpoint of this model'
    prefix, module = backbone
    arch = _arch_name(module)
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
    if is_model_wrapper(model):
        model = model.module
    state_dict = {_WRAPPER_PREFIX.sub('', key): value for key, value in state_dict.items()}
    loaded = _as_loaded(model, state_dict)
    # mmengine ignores a missing BatchNorm step count, and so does this check.
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()
                if not key.endswith('num_batches_tracked')}
    missing = [key for key in expected if key not in loaded]
    misshaped = [key for key in expected if key in loaded and _shape(loaded[key]) != expected[key]]
    if not missing and not misshaped:
        return
    matched = len(expected) - len(missing) - len(misshaped)
    found = find_lavit_weights(state_dict)
    backbone = _find_backbone(model)
    counts = _mismatch_counts(matched, len(expected), missing, misshaped, expected, loaded)
    holds = f'It holds {describe_checkpoint(state_dict)}; '
    if backbone is None:
        holds += 'the model has no LaViT.'
    elif backbone[0]:
        holds += f'the model\'s LaViT is {_arch_phrase(backbone[1])} under the prefix {backbone[0]!r}.'
    else:
        holds += f'the model is a LaViT of {_arch_phrase(backbone[1])}.'
    if allow_partial:
        print_log(f'checkpoint {filename} fits the model only in part ({ALLOW_PARTIAL_OPTION}): {counts}; '
                  f'the rest keeps its initial values. {holds}', logger='current', level=logging.WARNING)
        return
    rest_only = backbone is not None and not any(key.startswith(backbone[0]) for key in missing + misshaped)
    raise CheckpointMismatchError(
        f'checkpoint {filename} does not fit the model: {counts}.\n  {holds}\n'
        f'  {_fix(found, backbone, filename, rest_only)}. Or pass {ALLOW_PARTIAL_OPTION} to load only what fits.')


def check_checkpoint_fits(model: torch.nn.Module, filename: str, allow_partial: bool = False) -> None:
    """Checks that a checkpoint has every weight of the model, with its shape.

    The file is loaded as mmengine loads it (``CheckpointLoader``, so URLs and
    model-zoo names work, with the safe loaders; a leading 'module.' is
    stripped from its keys). Keys the model does not have (an EMA copy, a
    head the model lacks) are fine.

    Args:
        model (nn.Module): The model the checkpoint is for.
        filename (str): The checkpoint: a path, a URL or a model-zoo name.
        allow_partial (bool): Log what does not fit as a warning instead of
            raising. Default: False.

    Raises:
        CheckpointMismatchError: A weight of the model is missing from the
            checkpoint or has another shape there. The message counts the
            keys that match, names a few that do not, says what the
            checkpoint holds (:func:`describe_checkpoint`) and how to make it
            fit.
        CheckpointError: The file is refused, incomplete or no checkpoint.
    """
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f'checkpoint {filename} holds a {type(checkpoint).__name__}, not weights')
    check_state_dict_fits(model, weights_of(checkpoint), filename, allow_partial)


def _common_prefixes(keys, depth=2):
    prefixes = OrderedDict()
    for key in keys:
        parts = key.split('.')
        if len(parts) > depth:
            prefixes['.'.join(parts[:depth]) + '.'] = None
    return list(prefixes)[:5]


def _check_shapes_agree(state_dict: dict, module: torch.nn.Module, path: str, checkpoint_weights: dict) -> None:
    """Raises when keys the backbone and the checkpoint both have differ in shape: weights of another arch."""
    own = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    misshaped = [key for key, shape in own.items() if key in state_dict and _shape(state_dict[key]) != shape]
    if not misshaped:
        return
    found = find_lavit_weights(checkpoint_weights)
    examples = '; '.join(f'{key}: {_shape(state_dict[key])} in the checkpoint, {own[key]} in the backbone'
                         for key in misshaped[:_EXAMPLES])
    arch = _arch_phrase(module)
    fix = (f'Set the config\'s arch to the checkpoint\'s (--cfg-options model.backbone.arch={found.arch})'
           if found is not None and found.arch else
           'Build the backbone with the options the checkpoint was trained with')
    raise CheckpointMismatchError(
        f'checkpoint {path} does not fit {type(module).__name__}: {len(misshaped)} of the weights both have differ '
        f'in shape ({examples}); the checkpoint holds {describe_checkpoint(checkpoint_weights)}, the config builds '
        f'{arch}.\n  {fix}, or use a checkpoint of {arch}.')


def load_backbone_state_dict(init_cfg: dict, module: torch.nn.Module) -> dict:
    """Reads the backbone weights a ``Pretrained`` init_cfg points to.

    Accepts a plain state dict or an mmengine checkpoint (``state_dict`` or
    ``model`` entry) and strips ``init_cfg['prefix']`` (e.g. 'backbone.')
    when given; a backbone-only checkpoint loads under any prefix. A
    checkpoint that has only part of the backbone's weights loads that part.

    Args:
        init_cfg (dict): ``dict(type='Pretrained', checkpoint=..., prefix=...)``.
        module (nn.Module): The backbone the weights are for.

    Returns:
        dict: The state dict to load (missing and unexpected keys are left for
        the caller to log).

    Raises:
        FileNotFoundError: The checkpoint file does not exist.
        CheckpointError: The file is refused, incomplete or no checkpoint
            (see :func:`~mmlavit.utils.load_from_local`).
        CheckpointMismatchError: No key carries the prefix, none matches the
            module, or keys both have differ in shape (another arch's weights).
    """
    path = init_cfg['checkpoint']
    if '://' not in str(path) and not osp.isfile(osp.expanduser(str(path))):
        raise FileNotFoundError(
            f'the pretrained checkpoint {path} named in {type(module).__name__}\'s init_cfg does not '
            f'exist. Fix the path (e.g. --cfg-options model.backbone.init_cfg.checkpoint=PATH) or '
            f'remove init_cfg to train from scratch.')
    checkpoint_weights = weights_of(CheckpointLoader.load_checkpoint(path, map_location='cpu'))
    state_dict = checkpoint_weights
    own_keys = set(module.state_dict())
    prefix = init_cfg.get('prefix')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        stripped = strip_prefix(state_dict, prefix)
        # A backbone-only checkpoint (tools/convert_checkpoint.py) has no prefix to strip.
        if not stripped and not own_keys.intersection(state_dict):
            raise CheckpointMismatchError(
                f'no key of {path} starts with the prefix {prefix!r} given in init_cfg; its keys start '
                f'with {_common_prefixes(state_dict)}. Set init_cfg.prefix to the one that holds the '
                f'backbone (or drop it for a backbone-only checkpoint).')
        state_dict = stripped or state_dict
    if not own_keys.intersection(state_dict):
        raise CheckpointMismatchError(
            f'none of the {len(state_dict)} weights in {path} (prefix {prefix!r}) matches '
            f'{type(module).__name__}: the checkpoint holds {describe_checkpoint(checkpoint_weights)}; the model '
            f'expects keys like {sorted(own_keys)[:3]}. Check init_cfg.prefix, or convert the checkpoint '
            f'with tools/convert_checkpoint.py.')
    _check_shapes_agree(state_dict, module, path, checkpoint_weights)
    return state_dict
