"""Checks of a config's model before a tool builds it: the options of its LaViT backbone, and the channels its
neck or heads expect.

Without them a misspelt option ends as a ``TypeError`` from deep in the registry, and channels that do not
match LaViT's end as a shape error at the first forward pass, after the data has been loaded.
"""
import difflib
import inspect
from typing import List

from mmlavit.models import LaViT


class ConfigError(ValueError):
    """A config that cannot be read or cannot work as written; the message names the file or key to fix."""


def is_lavit(backbone_cfg) -> bool:
    """Whether a backbone config builds :class:`~mmlavit.LaViT` ('LaViT', 'mmlavit.LaViT' or the class)."""
    backbone_type = backbone_cfg.get('type') if isinstance(backbone_cfg, dict) else None
    return backbone_type is LaViT or (isinstance(backbone_type, str) and backbone_type.split('.')[-1] == 'LaViT')


def lavit_options() -> List[str]:
    """The keyword arguments of ``LaViT.__init__``: what ``model.backbone`` may hold besides ``type``."""
    return [name for name in inspect.signature(LaViT.__init__).parameters if name != 'self']


def check_backbone_options(backbone_cfg: dict) -> None:
    """Stops on a ``model.backbone`` key that LaViT does not take, naming the ones it does.

    Raises:
        ConfigError: e.g. for ``archh``: "model.backbone.archh is not a LaViT
            option (did you mean arch?)", with the accepted options.
    """
    accepted = lavit_options()
    unknown = [key for key in backbone_cfg if key != 'type' and key not in accepted]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, accepted, n=1)
        hints.append(f'model.backbone.{key}' + (f' (did you mean {close[0]}?)' if close else ''))
    raise ConfigError(f'{", ".join(hints)}: not {"a LaViT option" if len(unknown) == 1 else "LaViT options"}. '
                      f'LaViT takes: {", ".join(accepted)}')


def _describe(backbone_cfg: dict, backbone: LaViT) -> str:
    arch = backbone_cfg.get('arch', inspect.signature(LaViT.__init__).parameters['arch'].default)
    arch = f'arch {arch!r}' if isinstance(arch, str) else 'a custom arch'
    return f'LaViT ({arch}, out_indices {tuple(backbone.out_indices)})'


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_neck(neck: dict, key: str, channels: List[int], lavit: str) -> None:
    expected = _as_list(neck['in_channels'])
    if expected != channels:
        shown = channels if isinstance(neck['in_channels'], (list, tuple)) or len(channels) > 1 else channels[0]
        raise ConfigError(f'{key}.in_channels is {neck["in_channels"]}, but {lavit} outputs {channels} channels: '
                          f'set {key}.in_channels={shown} (or pick other stages with model.backbone.out_indices)')


def _check_head(head: dict, key: str, channels: List[int], lavit: str) -> None:
    """A head that picks its inputs by ``in_index`` (mmseg's decode heads; -1 when not given)."""
    in_index = head.get('in_index', -1)
    indices = _as_list(in_index)
    if any(not -len(channels) <= index < len(channels) for index in indices):
        raise ConfigError(f'{key}.in_index is {in_index}, but {lavit} has {len(channels)} outputs: set '
                          f'{key}.in_index to indices below {len(channels)} (or set model.backbone.out_indices)')
    picked = [channels[index] for index in indices]
    if _as_list(head['in_channels']) != picked:
        shown = picked if isinstance(in_index, (list, tuple)) else picked[0]
        raise ConfigError(f'{key}.in_channels is {head["in_channels"]}, but {lavit} outputs {shown} channels '
                          f'at in_index {in_index} (all its outputs: {channels}): set {key}.in_channels={shown}')


def check_channels(model_cfg: dict, backbone_cfg: dict, backbone: LaViT) -> None:
    """Stops when the module that takes LaViT's features expects other channels than LaViT outputs.

    That module is the neck when it has ``in_channels`` (FPN, ChannelMapper);
    without a neck, or behind one that keeps the channels (global pooling),
    it is each head that has ``in_channels``: mmseg's decode and auxiliary
    heads through their ``in_index``, a classifier's head on the last output.

    Raises:
        ConfigError: Naming LaViT's channels and the key to change.
    """
    channels = [backbone.embed_dims[index] for index in backbone.out_indices]
    lavit = _describe(backbone_cfg, backbone)
    neck = model_cfg.get('neck')
    first_neck = neck[0] if isinstance(neck, (list, tuple)) and neck else neck
    if isinstance(first_neck, dict):
        if 'in_channels' in first_neck:
            _check_neck(first_neck, 'model.neck' if first_neck is neck else 'model.neck.0', channels, lavit)
            return
        if 'Pooling' not in str(first_neck.get('type', '')):
            return  # a neck of unknown channels
    for key in ('decode_head', 'auxiliary_head'):
        heads = model_cfg.get(key)
        for index, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            if isinstance(head, dict) and 'in_channels' in head:
                _check_head(head, f'model.{key}' + (f'.{index}' if isinstance(heads, (list, tuple)) else ''),
                            channels, lavit)
    head = model_cfg.get('head')  # a classifier's, on the last output
    if isinstance(head, dict) and head.get('in_channels') not in (None, channels[-1]):
        raise ConfigError(f'model.head.in_channels is {head["in_channels"]}, but {lavit} outputs {channels[-1]} '
                          f'channels at its last output: set model.head.in_channels={channels[-1]}')


def check_model_config(model_cfg: dict) -> None:
    """Checks a model config whose backbone is LaViT before the model is built; other models pass unchanged.

    The backbone is built on its own: LaViT's own checks of its option values
    and init_cfg (``LaViTConfigError``) run here, and its output channels are
    those the neck or heads are compared with.

    Raises:
        ConfigError: An unknown ``model.backbone`` key, a model-level
            ``pretrained`` that would be passed to LaViT, or channels that do
            not match (:func:`check_channels`).
        LaViTConfigError: A LaViT option with a value LaViT does not accept.
    """
    backbone_cfg = model_cfg.get('backbone') if isinstance(model_cfg, dict) else None
    if not is_lavit(backbone_cfg):
        return
    check_backbone_options(backbone_cfg)
    if model_cfg.get('pretrained') and 'EncoderDecoder' in str(model_cfg.get('type', '')):
        raise ConfigError(f'model.pretrained={model_cfg["pretrained"]!r} would be passed to LaViT, which loads '
                          f'weights through its init_cfg: set model.pretrained=None and '
                          f'model.backbone.init_cfg.checkpoint=PATH')
    options = {key: value for key, value in backbone_cfg.items() if key != 'type'}
    check_channels(model_cfg, backbone_cfg, LaViT(**options))
