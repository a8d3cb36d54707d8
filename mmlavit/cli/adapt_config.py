"""Turns an mmdet, mmseg or mmpretrain config into its LaViT twin (tools/adapt_config.py).

The twin inherits the config (``_base_``) and changes only what a backbone swap needs:

- ``model.backbone`` becomes LaViT (the old backbone's settings, its ``frozen_stages``, ``norm_eval``, BN and
  weights among them, are dropped), with as many stages out as the old backbone gave: the last ones, so a
  3-level neck or head gets stages 1-3 at strides 8, 16 and 32 as it got them from a ResNet;
- the channels go where the features go: the neck's ``in_channels`` (FPN, ChannelMapper, YOLOXPAFPN...);
  without such a neck each head's, through its ``in_index`` (mmseg's decode and auxiliary heads, DeepLabV3+'s
  ``c1_in_channels`` from the first output), every output for a head that takes them all (Mask2Former's), the
  last output for a classifier's head;
- ``model.pretrained`` (a ResNet checkpoint in mmseg's ResNet configs) goes;
- the data preprocessors normalise as LaViT's checkpoints were trained: ImageNet mean and std, RGB (caffe-style
  BGR with unit std, or none, changes);
- ``custom_imports`` gains ``mmlavit`` and ``custom_hooks`` :class:`~mmlavit.DPLossHook`, after the config's own.

The optimizer and schedule stay the config's. The twin is then built, and a head whose priors would sit at
other strides than its features is refused (:func:`~mmlavit.cli.model_checks.check_feature_strides`).

    python tools/adapt_config.py mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py --arch t \\
        --out my_configs/faster-rcnn_lavit-t_fpn_1x_coco.py
"""
import argparse
import copy
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

from mmengine.config import Config, DictAction
from mmengine.utils import get_installed_path

from mmlavit.models import LaViT
from .errors import ToolArgumentError
from .model_checks import ConfigError, feature_inputs, is_lavit
from .runner import build_model

#: How LaViT's checkpoints normalise images: ImageNet's mean and std, RGB.
LAVIT_MEAN = [123.675, 116.28, 103.53]
LAVIT_STD = [58.395, 57.12, 57.375]
#: Where the model's frameworks keep their configs inside the installed packages (``mmdet::...`` names).
PACKAGES = ('mmdet', 'mmseg', 'mmpretrain')


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _plain(value):
    return value.to_dict() if hasattr(value, 'to_dict') else value


def _set(changes: dict, model: dict, path: List[str], value) -> None:
    """Sets ``model``'s key ``path`` (e.g. ['neck', 'in_channels'], ['auxiliary_head', '1', 'in_channels']) to
    ``value`` in ``changes``; a list on the way (several necks or heads) is copied whole, as merging replaces it."""
    name, rest = path[0], path[1:]
    if not rest:
        changes[name] = value
    elif isinstance(model[name], (list, tuple)):
        index = int(rest[0])
        items = changes.setdefault(name, [_plain(item) for item in model[name]])
        _set(items[index], model[name][index], rest[1:], value)
    else:
        _set(changes.setdefault(name, {}), model[name], rest, value)


def lavit_twin(cfg: Config, arch='t', checkpoint: Optional[str] = None,
               backbone_options: Optional[dict] = None) -> Tuple[dict, List[str]]:
    """The settings that turn ``cfg`` into its LaViT twin, and one line per change.

    Args:
        cfg (Config): An mmdet, mmseg or mmpretrain config, as loaded (its ``_base_`` merged).
        arch (str | dict): LaViT's arch. Default: 't'.
        checkpoint (str, optional): LaViT weights for ``init_cfg`` (an ImageNet LaViT, its keys under
            ``backbone.``, or a backbone-only file). Default: None (trained from scratch).
        backbone_options (dict, optional): More LaViT options, e.g. ``dict(frozen_stages=1)``.

    Returns:
        tuple[dict, list[str]]: The overrides, to merge into the config (or to write under ``_base_``), and
        what each changes.

    Raises:
        ConfigError: The config has no backbone, already has LaViT, or its heads read more levels than LaViT's
            four stages or none that the step can tell.
    """
    model = cfg.model
    old = model.get('backbone')
    if not isinstance(old, dict):
        raise ConfigError('the config\'s model has no backbone to replace (model.backbone)')
    if is_lavit(old):
        raise ConfigError('the config\'s backbone is LaViT already (model.backbone.type)')
    options = dict(backbone_options or {})
    lavit = LaViT(arch=arch, **{key: value for key, value in options.items() if key != 'out_indices'})
    inputs = feature_inputs(model)
    if not inputs:
        raise ConfigError('no neck or head of the config says which backbone channels it takes (in_channels): '
                          'swap the backbone by hand (README, "Using LaViT in your own config")')
    num_stages = len(lavit.embed_dims)
    levels = len(_as_list(old['out_indices'])) if 'out_indices' in old else max(
        len(_as_list(value)) if positions is None else max(positions) + 1 for _, value, positions, _ in inputs)
    if levels > num_stages:
        raise ConfigError(f'the config\'s neck or heads read {levels} backbone levels; LaViT has {num_stages} '
                          f'stages (strides 4 to 32)')
    out_indices = tuple(options.pop('out_indices', range(num_stages - levels, num_stages)))
    channels = [lavit.embed_dims[index] for index in out_indices]

    init_cfg = dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.') if checkpoint else None
    backbone = dict(_delete_=True, type='mmlavit.LaViT', arch=arch, out_indices=out_indices, **options,
                    **({'init_cfg': init_cfg} if init_cfg else {}))
    dropped = ', '.join(key for key in old if key not in ('type', '_scope_'))
    model_changes = dict(backbone=backbone)
    changes = [f'model.backbone: {old["type"]} ({dropped or "its defaults"}) -> LaViT arch {arch!r}, out_indices '
               f'{out_indices} (strides {", ".join(str(4 * 2 ** index) for index in out_indices)})'
               + (f', weights from {checkpoint}' if checkpoint else ', trained from scratch')]
    for key, value, positions, _ in inputs:
        picked = channels if positions is None else [channels[position] for position in positions]
        new = picked if isinstance(value, (list, tuple)) else picked[0]
        if _as_list(new) != _as_list(value):
            _set(model_changes, model, key.split('.')[1:], new)
            changes.append(f'{key}: {value} -> {new}')
    if model.get('pretrained'):
        model_changes['pretrained'] = None
        changes.append(f'model.pretrained: {model["pretrained"]!r} (the old backbone\'s weights) -> None')

    overrides = dict(model=model_changes)
    for key, owner, target in (('model.data_preprocessor', model, model_changes), ('data_preprocessor', cfg,
                                                                                      overrides)):
        preprocessor = owner.get(key.split('.')[-1])
        if not isinstance(preprocessor, dict):
            continue
        rgb = 'to_rgb' if 'to_rgb' in preprocessor else 'bgr_to_rgb'
        wanted = dict(mean=LAVIT_MEAN, std=LAVIT_STD, **{rgb: True})
        if any(_as_list(preprocessor.get(name)) != _as_list(value) for name, value in wanted.items()):
            target[key.split('.')[-1]] = wanted
            was = ', '.join(f'{name}={preprocessor.get(name)}' for name in wanted)
            changes.append(f'{key}: {was} -> ImageNet mean and std, RGB (as LaViT\'s checkpoints)')

    imports = _as_list(_plain(cfg.get('custom_imports', {})).get('imports', []))
    overrides['custom_imports'] = dict(imports=imports + ['mmlavit'] * ('mmlavit' not in imports),
                                       allow_failed_imports=False)
    hooks = [_plain(hook) for hook in cfg.get('custom_hooks') or []]
    if not any(str(hook.get('type')).split('.')[-1] == 'DPLossHook' for hook in hooks):
        kept = ', '.join(str(hook.get('type')) for hook in hooks)
        hooks.append(dict(type='mmlavit.DPLossHook'))
        changes.append('custom_hooks: + mmlavit.DPLossHook' + (f' (after the config\'s {kept})' if kept else ''))
    overrides['custom_hooks'] = hooks
    return overrides, changes


def config_file(source: str) -> str:
    """The file of a config named by path or as ``package::path`` (an installed package's configs)."""
    if '::' not in source:
        return source
    package, path = source.split('::', 1)
    try:
        return osp.join(get_installed_path(package), '.mim', 'configs', path)
    except Exception:
        raise ConfigError(f'{source}: {package} is not installed, so it has no configs') from None


def adapt_config(source: str, **kwargs) -> Tuple[Config, List[str]]:
    """The LaViT twin of config ``source`` (a path or ``mmdet::...``), merged, and its changes.

    Keyword arguments go to :func:`lavit_twin`.
    """
    cfg = Config.fromfile(config_file(source))
    overrides, changes = lavit_twin(cfg, **kwargs)
    cfg.merge_from_dict(overrides)
    return cfg, changes


def base_name(source: str, out: str) -> str:
    """How the written config names ``source``: as ``package::path`` inside an installed package's configs,
    else relative to the written file."""
    if '::' in source:
        return source
    real = osp.realpath(source)
    for package in PACKAGES:
        try:
            root = osp.join(osp.dirname(__import__(package).__file__), '.mim', 'configs')
        except ImportError:
            continue
        if real.startswith(root + os.sep):
            return f'{package}::{osp.relpath(real, root)}'
    return osp.relpath(real, osp.dirname(osp.abspath(out)))


def format_value(value, indent: int = 0, width: int = 110) -> str:
    """A config value as Python: dicts as ``dict(...)``, one entry per line where one line is too long."""
    value = _plain(value)
    if isinstance(value, dict):
        items = [f'{key}={format_value(item, indent + 4)}' if str(key).isidentifier()
                 else f'**{{{key!r}: {format_value(item, indent + 4)}}}' for key, item in value.items()]
        opening, closing = 'dict(', ')'
    elif isinstance(value, (list, tuple)):
        items = [format_value(item, indent + 4) for item in value]
        opening, closing = ('[', ']') if isinstance(value, list) else ('(', ',)' if len(value) == 1 else ')')
    else:
        return repr(value)
    line = opening + ', '.join(items) + closing
    if indent + len(line) <= width:
        return line
    pad = ' ' * (indent + 4)
    return opening + '\n' + ''.join(f'{pad}{item},\n' for item in items) + ' ' * indent + closing.lstrip(',')


def twin_text(source: str, out: str, overrides: dict, changes: List[str], command: str) -> str:
    """The written config: a header with the changes, ``_base_`` and the overrides."""
    header = [f'# {source} with LaViT as its backbone, written by', f'#   {command}', '# What changed:']
    header += [f'# - {change}' for change in changes]
    body = [f'_base_ = {base_name(source, out)!r}'] + [f'{key} = {format_value(value)}'
                                                       for key, value in overrides.items()]
    return '\n'.join(header + body) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the config to adapt: a path or an installed one, e.g. '
                                       'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    parser.add_argument('--out', required=True, help='the LaViT config to write (a new file)')
    parser.add_argument('--arch', default='t', help='LaViT arch: t, s or b (default: t)')
    parser.add_argument('--checkpoint', help='LaViT weights for the backbone\'s init_cfg (default: none, '
                                             'trained from scratch)')
    parser.add_argument('--backbone-options', nargs='+', action=DictAction, default={},
                        help='more LaViT options, e.g. frozen_stages=1 drop_path_rate=0.2')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if osp.exists(args.out):
        raise ToolArgumentError(f'--out {args.out} exists: choose a new file (this tool does not write over one)')
    source = Config.fromfile(config_file(args.config))
    overrides, changes = lavit_twin(source, arch=args.arch, checkpoint=args.checkpoint,
                                    backbone_options=args.backbone_options)
    twin = copy.deepcopy(source)
    twin.merge_from_dict(copy.deepcopy(overrides))  # merging pops the _delete_ keys
    build_model(twin)  # the channel and stride checks, before anything is written
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    command = 'python tools/adapt_config.py ' + ' '.join(sys.argv[1:] if argv is None else map(str, argv))
    with open(args.out, 'x') as f:
        f.write(twin_text(args.config, args.out, overrides, changes, command))
    print(f'Wrote {args.out}:')
    for change in changes:
        print(f'  {change}')
