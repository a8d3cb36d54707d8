"""Checkpoint loading on torch >= 2.6 with mmengine 0.10.7, and backbone weight hand-off."""
import os.path as osp
from collections import OrderedDict

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def _load_from_local_trusted(filename, map_location):
    """mmengine's local loader with ``weights_only=False``.

    torch >= 2.6 loads with ``weights_only=True`` by default, which cannot
    unpickle what mmengine 0.10.7 writes into its checkpoints (HistoryBuffer,
    numpy objects), so resume and ``load_from`` fail. mmengine's fix (PR
    #1670) is not released. Local checkpoints are files the user chose to load
    and are trusted as such: never point a config at a checkpoint you would not
    run as code.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def register_trusted_local_loader():
    """Replaces mmengine's loader of local paths (prefix '') with the trusted one."""
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local_trusted, force=True)


def _common_prefixes(keys, depth=2):
    prefixes = OrderedDict()
    for key in keys:
        parts = key.split('.')
        if len(parts) > depth:
            prefixes['.'.join(parts[:depth]) + '.'] = None
    return list(prefixes)[:5]


def weights_of(checkpoint: dict) -> dict:
    """The state dict of a checkpoint: its ``state_dict`` or ``model`` entry, or the checkpoint itself."""
    for entry in ('state_dict', 'model'):
        if entry in checkpoint:
            return checkpoint[entry]
    return checkpoint


def strip_prefix(state_dict: dict, prefix: str) -> OrderedDict:
    """The entries whose key starts with ``prefix`` (ending in '.'), with the prefix removed."""
    return OrderedDict((key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))


def load_backbone_state_dict(init_cfg: dict, module: torch.nn.Module) -> dict:
    """Reads the backbone weights a ``Pretrained`` init_cfg points to.

    Accepts a plain state dict or an mmengine checkpoint (``state_dict`` or
    ``model`` entry) and strips ``init_cfg['prefix']`` (e.g. 'backbone.')
    when given; a backbone-only checkpoint loads under any prefix.

    Args:
        init_cfg (dict): ``dict(type='Pretrained', checkpoint=..., prefix=...)``.
        module (nn.Module): The backbone the weights are for.

    Returns:
        dict: The state dict to load (missing and unexpected keys are left for
        the caller to log).

    Raises:
        FileNotFoundError: The checkpoint file does not exist.
        ValueError: No key carries the prefix, or none matches the module.
    """
    path = init_cfg['checkpoint']
    if '://' not in str(path) and not osp.isfile(osp.expanduser(str(path))):
        raise FileNotFoundError(
            f'the pretrained checkpoint {path} named in {type(module).__name__}\'s init_cfg does not '
            f'exist. Fix the path (e.g. --cfg-options model.backbone.init_cfg.checkpoint=PATH) or '
            f'remove init_cfg to train from scratch.')
    state_dict = weights_of(CheckpointLoader.load_checkpoint(path, map_location='cpu'))
    own_keys = set(module.state_dict())
    prefix = init_cfg.get('prefix')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        stripped = strip_prefix(state_dict, prefix)
        # A backbone-only checkpoint (tools/convert_checkpoint.py) has no prefix to strip.
        if not stripped and not own_keys.intersection(state_dict):
            raise ValueError(
                f'no key of {path} starts with the prefix {prefix!r} given in init_cfg; its keys start '
                f'with {_common_prefixes(state_dict)}. Set init_cfg.prefix to the one that holds the '
                f'backbone (or drop it for a backbone-only checkpoint).')
        state_dict = stripped or state_dict
    if not own_keys.intersection(state_dict):
        raise ValueError(
            f'none of the {len(state_dict)} weights in {path} (prefix {prefix!r}) matches '
            f'{type(module).__name__}: the checkpoint has keys like {list(state_dict)[:3]}, the model '
            f'expects keys like {sorted(own_keys)[:3]}. Check init_cfg.prefix, or convert the checkpoint '
            f'with tools/convert_checkpoint.py.')
    return state_dict
