"""What the tools share: arguments, config loading, building a config's model, the checks before a Runner, CPU
distributed set-up."""
import argparse
import ast
import glob
import os
import os.path as osp
import re
import subprocess
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

from mmlavit.utils.checkpoint import CheckpointError
from .checkpoint_fit import ALLOW_PARTIAL_OPTION, check_checkpoint_fits
from .datasets import check_datasets, iter_datasets
from .errors import ToolArgumentError
from .model_checks import ConfigError, check_feature_strides, check_model_config


class ConfigOptions(DictAction):
    """mmengine's ``--cfg-options`` parsing, but a value keeps the spaces it holds.

    mmengine removes every space of a value (so that ``[1, 2]`` parses as a
    list), which turns ``data_root=/data/my set/`` into another path without a
    word. A single value is kept whole; a space inside an element of a list or
    tuple is an error that names a way that works.
    """

    @staticmethod
    def _parse_iterable(val: str):
        inner = val.strip('\'"')
        if ' ' not in inner:
            return DictAction._parse_iterable(val)
        if not inner.startswith(('[', '(')) and ',' not in inner:
            return DictAction._parse_int_float_bool(inner)
        if re.search(r'[^\s,\[\](]\s+[^\s,\[\])]', inner):
            raise ToolArgumentError(f'--cfg-options value {val!r} holds a space inside an element of a list, which '
                                    f'mmengine\'s parsing would remove: set that list in a config file that inherits '
                                    f'yours (_base_), or leave the space out')
        return DictAction._parse_iterable(val)


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Adds the options every Runner tool takes (--work-dir, --cfg-options, --launcher) and parses ``argv``."""
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions,
                        help='override config settings, e.g. data_root=/data/coco/ '
                             'train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def positive_int(text: str) -> int:
    """An argparse type: an integer above 0."""
    if not text.lstrip('-').isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number above 0')
    return int(text)


def add_allow_partial_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--allow-partial-checkpoint``: load a checkpoint that fits the model only in part."""
    parser.add_argument(ALLOW_PARTIAL_OPTION, action='store_true',
                        help='load a checkpoint that lacks some of the model\'s weights or has them in other '
                             'shapes (they keep their initial values); without it such a checkpoint is an error')


def _syntax_error_in(config_path: str) -> Optional[SyntaxError]:
    """The first syntax error in a config or its local bases, with the file it is in (``filename``)."""
    with open(config_path, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=config_path)
    except SyntaxError as error:
        return error
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(target, 'id', None) == '_base_' for target in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            for base in [bases] if isinstance(bases, str) else bases:
                base_path = osp.normpath(osp.join(osp.dirname(config_path), base))
                if '::' not in base and osp.isfile(base_path):
                    error = _syntax_error_in(base_path)
                    if error is not None:
                        return error
    return None


def _read_config(config_path: str) -> Config:
    """``Config.fromfile``, with a missing file or a syntax error (in it or a base) as a :class:`ConfigError`."""
    if osp.isdir(config_path):
        raise ConfigError(f'config {config_path} is a directory; give a config file (.py)')
    if not osp.isfile(config_path):
        raise ConfigError(f'config file {config_path} does not exist')
    try:
        return Config.fromfile(config_path)
    except SyntaxError as error:
        # mmengine parses without a file name ('<unknown>'): find the file again.
        found = _syntax_error_in(config_path) or error
        line = f'\n    {found.text.rstrip()}' if found.text else ''
        raise ConfigError(f'syntax error in config {found.filename}, line {found.lineno}: {found.msg}{line}') from None


def load_config(config_path: str, cfg_options: Optional[dict] = None) -> Config:
    """Reads a config and merges ``--cfg-options``.

    ``data_root=PATH`` among the options also moves every dataset, and every
    evaluator annotation file, that used the config's own ``data_root`` there
    (a config's ``data_root`` variable is substituted into the dataset dicts
    when the file is read, so changing the variable alone would move nothing).

    Raises:
        ConfigError: The file does not exist or it (or a base) has a syntax error.
    """
    cfg = _read_config(config_path)
    cfg_options = dict(cfg_options or {})
    new_root = cfg_options.pop('data_root', None)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if new_root is not None:
        old_root = cfg.get('data_root')
        for dataset in iter_datasets(cfg):
            if 'data_root' in dataset and (old_root is None or dataset['data_root'] == old_root):
                dataset['data_root'] = new_root
        for evaluator in (cfg.get('val_evaluator'), cfg.get('test_evaluator')):
            ann_file = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
            if old_root and isinstance(ann_file, str) and ann_file.startswith(old_root):
                evaluator['ann_file'] = osp.join(new_root, ann_file[len(old_root):])
        cfg.data_root = new_root
    return cfg


def build_model(config, checkpoint: Optional[str] = None, cfg_options: Optional[dict] = None,
                allow_partial: bool = False):
    """The config's model, built in its default scope, in eval mode, with the checkpoint's weights if given.

    The model config is checked first (:func:`check_model_config`), the
    checkpoint before it is loaded (:func:`~mmlavit.cli.checkpoint_fit.check_checkpoint_fits`). As mmdet's
    init_detector and mmseg's init_model, ``model.cfg`` is the config and
    ``model.dataset_meta`` the checkpoint's (None without one).

    Args:
        config (str | Config): A config file (read with ``cfg_options``) or a config.
    """
    cfg = config if isinstance(config, Config) else load_config(config, cfg_options)
    if checkpoint:
        check_checkpoint_file(checkpoint)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    check_model_config(cfg.model)
    model = MODELS.build(cfg.model)
    check_feature_strides(model)
    model.cfg, model.dataset_meta = cfg, None
    if checkpoint:
        check_checkpoint_fits(model, checkpoint, allow_partial)
        meta = load_checkpoint(model, checkpoint, map_location='cpu').get('meta', {})
        model.dataset_meta = meta.get('dataset_meta')
    model.eval()
    return model


def check_checkpoint_file(path: str, option: str = 'checkpoint') -> None:
    """Stops when a local checkpoint path is a directory or does not exist (URLs are left to their loaders).

    Raises:
        CheckpointError: Naming ``option`` (e.g. '--resume') and the path.
    """
    if '://' in str(path):
        return
    if osp.isdir(path):
        inside = sorted(glob.glob(osp.join(path, '*.pth')), key=osp.getmtime)
        example = f', e.g. {inside[-1]}' if inside else ''
        raise CheckpointError(f'{option} {path} is a directory, not a checkpoint file: give a .pth file{example}')
    if not osp.isfile(path):
        raise CheckpointError(f'{option} {path} does not exist')


def _set_slurm_rendezvous() -> None:
    """torch.distributed's variables from the ones srun sets, as mmengine's slurm launcher derives them.

    The master is the job's first host (``scontrol show hostname``) unless
    MASTER_ADDR is set, at MASTER_PORT (default 29500).
    """
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        hosts = subprocess.run(['scontrol', 'show', 'hostname', os.environ['SLURM_NODELIST']], capture_output=True,
                               text=True, check=True).stdout.split()
        os.environ['MASTER_ADDR'] = hosts[0]


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Prepares ``cfg`` for ``launcher``; on a machine without CUDA, gloo and a device-less DDP.

    mmengine 0.10.7's pytorch and slurm launchers call ``torch.cuda.set_device``
    and wrap the model with ``device_ids=[LOCAL_RANK]``; both fail without
    CUDA. The gloo group is initialised here instead (the Runner then skips
    its own ``init_dist``), from torchrun's variables or, under Slurm, from
    srun's, and DDP gets ``device_ids=None``.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        if launcher == 'slurm':
            _set_slurm_rendezvous()
        dist.init_process_group(backend='gloo')
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def set_work_dir(cfg: Config, config_path: str, work_dir: Optional[str]) -> str:
    """Sets ``cfg.work_dir``: ``work_dir``, else the config's, else ``work_dirs/<config name>``; returns it."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    return cfg.work_dir


def check_run(cfg: Config, loaders, allow_partial: bool = False) -> None:
    """The checks before a Runner is built for tools/train.py and tools/test.py.

    The datasets of ``loaders`` (:func:`~mmlavit.cli.datasets.check_datasets`),
    the model config (:func:`check_model_config`), the built model's feature
    strides (:func:`check_feature_strides`) and the checkpoint the Runner will
    load: a file that exists and fits the model
    (:func:`~mmlavit.cli.checkpoint_fit.check_checkpoint_fits`, ``allow_partial``
    passed on). They come before the Runner, so that a run they stop writes
    nothing into the work dir.
    """
    check_datasets(cfg, loaders)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = cfg.model.get('module', cfg.model)  # a test-time augmentation model: the one it wraps
    check_model_config(model_cfg)
    model = MODELS.build(model_cfg)
    check_feature_strides(model)
    checkpoint = checkpoint_to_load(cfg)
    if checkpoint:
        check_checkpoint_file(checkpoint, '--resume' if cfg.get('resume') else 'load_from')
        check_checkpoint_fits(model, checkpoint, allow_partial)


def make_runner(cfg: Config, launcher: str):
    """The Runner of a checked config (``runner_type`` if the config names one), after the distributed set-up."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    setup_distributed(cfg, launcher)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def checkpoint_to_load(cfg: Config) -> Optional[str]:
    """The checkpoint the Runner will load: ``load_from``, or with ``--resume`` alone the work dir's latest."""
    if cfg.get('load_from'):
        return cfg.load_from
    if cfg.get('resume'):
        from mmengine.runner import find_latest_checkpoint
        return find_latest_checkpoint(cfg.work_dir)
    return None
