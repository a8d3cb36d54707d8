"""Checks of a config's model before a tool builds it: the options of its LaViT backbone, and the channels its
neck or heads expect; and of the built model: the strides its heads expect.

Without them a misspelt option ends as a ``TypeError`` from deep in the registry, channels that do not
match LaViT's end as a shape error at the first forward pass, after the data has been loaded, and a head
given other levels than it places its priors on trains and predicts boxes in the wrong places.
"""
import difflib
import inspect
from typing import Any, List, NamedTuple, Optional, Tuple

import torch
from torch import nn

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


class FeatureInput(NamedTuple):
    """A config key that gives the channels of the backbone outputs a neck or head takes."""
    #: e.g. 'model.neck.in_channels', 'model.decode_head.c1_in_channels'.
    key: str
    #: Its value in the config.
    channels: Any
    #: The backbone outputs it takes (indices into them), or None for all of them.
    positions: Optional[List[int]]
    #: Which outputs, as the messages say it: 'at in_index 2', 'at its last output'.
    where: str = ''


def feature_inputs(model_cfg: dict) -> List[FeatureInput]:
    """Where a model config gives the channels of the backbone features its neck or heads take.

    The neck's ``in_channels`` when it has them (FPN, ChannelMapper, YOLOXPAFPN: all outputs); without a neck, or
    behind one that keeps the channels (global pooling), each head's: through ``in_index`` (mmseg's decode and
    auxiliary heads), all outputs for a list without ``in_index`` (Mask2Former's heads), the last for a single
    value (a classifier's head), and the first for DeepLabV3+'s ``c1_in_channels``. Empty behind a neck of unknown
    channels.
    """
    neck = model_cfg.get('neck')
    first_neck = neck[0] if isinstance(neck, (list, tuple)) and neck else neck
    if isinstance(first_neck, dict):
        if 'in_channels' in first_neck:
            key = 'model.neck' if first_neck is neck else 'model.neck.0'
            return [FeatureInput(f'{key}.in_channels', first_neck['in_channels'], None)]
        if 'Pooling' not in str(first_neck.get('type', '')):
            return []
    inputs = []
    for name in ('decode_head', 'auxiliary_head', 'panoptic_head', 'head'):
        heads = model_cfg.get(name)
        for index, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            if not isinstance(head, dict) or 'in_channels' not in head:
                continue
            key = f'model.{name}' + (f'.{index}' if isinstance(heads, (list, tuple)) else '')
            if 'in_index' in head:
                inputs.append(FeatureInput(f'{key}.in_channels', head['in_channels'], _as_list(head['in_index']),
                                           f'at in_index {head["in_index"]}'))
            elif isinstance(head['in_channels'], (list, tuple)):
                inputs.append(FeatureInput(f'{key}.in_channels', head['in_channels'], None))
            else:
                inputs.append(FeatureInput(f'{key}.in_channels', head['in_channels'], [-1], 'at its last output'))
            if 'c1_in_channels' in head:  # DeepLabV3+'s decoder takes the first output too
                inputs.append(FeatureInput(f'{key}.c1_in_channels', head['c1_in_channels'], [0],
                                           'at its first output'))
    return inputs


def check_channels(model_cfg: dict, backbone_cfg: dict, backbone: LaViT) -> None:
    """Stops when a neck or head that takes LaViT's features (:func:`feature_inputs`) expects other channels.

    Raises:
        ConfigError: Naming LaViT's channels and the key to change.
    """
    channels = [backbone.embed_dims[index] for index in backbone.out_indices]
    lavit = _describe(backbone_cfg, backbone)
    for key, value, positions, where in feature_inputs(model_cfg):
        if positions is None:
            if _as_list(value) != channels:
                shown = channels if isinstance(value, (list, tuple)) or len(channels) > 1 else channels[0]
                raise ConfigError(f'{key} is {value}, but {lavit} outputs {channels} channels: set {key}={shown} '
                                  f'(or pick other stages with model.backbone.out_indices)')
            continue
        head = key.rsplit('.', 1)[0]
        if any(not -len(channels) <= index < len(channels) for index in positions):
            raise ConfigError(f'{head}.in_index is {where[len("at in_index "):]}, but '
                              f'{lavit} has {len(channels)} outputs: set {head}.in_index to indices below '
                              f'{len(channels)} (or set model.backbone.out_indices)')
        picked = [channels[index] for index in positions]
        if _as_list(value) != picked:
            shown = picked if isinstance(value, (list, tuple)) else picked[0]
            all_outputs = f' (all its outputs: {channels})' if 'in_index' in where else ''
            raise ConfigError(f'{key} is {value}, but {lavit} outputs {shown} channels {where}{all_outputs}: set '
                              f'{key}={shown}')


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


#: The side of the zero image that feature strides are measured on: a multiple of every stride a head uses.
STRIDE_PROBE_SIZE = 256


def expected_strides(model: nn.Module) -> List[Tuple[str, List[int], bool]]:
    """What a built model's modules expect of the features: (what, strides, exact) per module.

    A dense head's prior or point generator (anchors, points; also Mask2Former's pixel decoder) expects exactly
    its strides (``exact``); an RoI extractor takes the first ``len(strides)`` features.
    """
    found = []
    for name, module in model.named_modules():
        for attribute in ('prior_generator', 'point_generator'):
            strides = getattr(getattr(module, attribute, None), 'strides', None)
            if strides is not None:
                found.append((f'model.{name} ({type(module).__name__}) places its priors',
                              [int(_as_list(stride)[0]) for stride in strides], True))
        if isinstance(getattr(module, 'featmap_strides', None), (list, tuple)):
            found.append((f'model.{name} ({type(module).__name__}) pools its RoIs',
                          [int(stride) for stride in module.featmap_strides], False))
    return found


def check_feature_strides(model: nn.Module) -> None:
    """Stops when a LaViT model's head expects its features at other strides than its backbone and neck give.

    The strides are measured by one ``extract_feat`` forward of a zero image (eval mode, no gradients).

    Raises:
        ConfigError: Naming the head, the strides it expects and gets, and LaViT's stages at its strides.
    """
    backbone = getattr(model, 'backbone', None)
    expected = expected_strides(model) if isinstance(backbone, LaViT) and hasattr(model, 'extract_feat') else []
    if not expected:
        return
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            image = torch.zeros(1, backbone.in_channels, STRIDE_PROBE_SIZE, STRIDE_PROBE_SIZE)
            strides = [STRIDE_PROBE_SIZE // feature.shape[-1] for feature in model.extract_feat(image)]
    finally:
        model.train(training)
    for what, wanted, exact in expected:
        if (strides if exact else strides[:len(wanted)]) != wanted:
            stages = tuple(index for index in range(len(backbone.embed_dims)) if 4 * 2 ** index in wanted)
            channels = [backbone.embed_dims[index] for index in stages]
            raise ConfigError(
                f'{what} at strides {wanted}, but LaViT (out_indices {tuple(backbone.out_indices)}) and the neck '
                f'give it features at strides {strides}: its boxes would be placed at the wrong strides. Set '
                f'model.backbone.out_indices={stages} (LaViT\'s stages at those strides) and the neck\'s '
                f'in_channels to {channels}, or write the config with tools/adapt_config.py')
