"""What the tools share: arguments, config loading, building a config's model, CPU distributed set-up, data,
checkpoint and resume checks."""
import argparse
import ast
import glob
import os
import os.path as osp
import subprocess
from typing import Iterator, List, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

from mmlavit.utils.checkpoint import (
    CheckpointError,
    IncompleteCheckpointError,
    incomplete_checkpoint_message,
    is_incomplete_checkpoint,
)
from .checkpoint_fit import ALLOW_PARTIAL_OPTION, check_checkpoint_fits
from .model_checks import ConfigError, check_model_config

# Where each dataset type expects its files, for the missing-data message.
EXPECTED_LAYOUTS = {
    'CocoDataset': 'data/coco/annotations/instances_{train,val}2017.json and data/coco/{train,val}2017/*.jpg '
                   '(COCO 2017 from https://cocodataset.org)',
    'ADE20KDataset': 'data/ade/ADEChallengeData2016/images/{training,validation}/*.jpg and '
                     'data/ade/ADEChallengeData2016/annotations/{training,validation}/*.png '
                     '(ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu)',
    'ImageNet': 'data/imagenet/{train,val}/<class>/*.JPEG or data/imagenet/meta/{train,val}.txt with the '
                'images beside it (ILSVRC2012 from https://image-net.org)',
}


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Adds the options every Runner tool takes (--work-dir, --cfg-options, --launcher) and parses ``argv``."""
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. data_root=/data/coco/ '
                             'train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def add_allow_partial_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--allow-partial-checkpoint``: load a checkpoint that fits the model only in part."""
    parser.add_argument(ALLOW_PARTIAL_OPTION, action='store_true',
                        help='load a checkpoint that lacks some of the model\'s weights or has them in other '
                             'shapes (they keep their initial values); without it such a checkpoint is an error')


class DatasetNotFoundError(FileNotFoundError):
    """A config points at a dataset that is not on disk."""


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


def iter_datasets(cfg: Config, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')
                  ) -> Iterator[dict]:
    """Every leaf dataset dict of the named dataloaders (through wrappers like RepeatDataset)."""
    def leaves(dataset):
        if not isinstance(dataset, dict):
            return
        if 'dataset' in dataset:
            yield from leaves(dataset['dataset'])
        elif 'datasets' in dataset:
            for child in dataset['datasets']:
                yield from leaves(child)
        else:
            yield dataset

    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if loader_cfg:
            yield from leaves(loader_cfg.get('dataset'))


def _dataset_paths(dataset: dict) -> List[str]:
    root = dataset.get('data_root') or ''
    paths = []
    if dataset.get('ann_file'):
        paths.append(osp.join(root, dataset['ann_file']))
    prefix = dataset.get('data_prefix') or {}
    for value in (prefix.values() if isinstance(prefix, dict) else [prefix]):
        if isinstance(value, str) and value:
            paths.append(osp.join(root, value))
    if not paths and root:
        # Split-based datasets (mmpretrain's ImageNet with split='train') read root/split/.
        paths.append(osp.join(root, dataset['split']) if dataset.get('split') else root)
    return paths


def check_json_complete(path: str) -> None:
    """Stops when a JSON annotation file is cut short (it must end with its closing bracket).

    Only the end of the file is read, so that COCO's large annotation files
    cost nothing here; a file damaged elsewhere still fails where it is parsed.

    Raises:
        DatasetNotFoundError: Naming the file.
    """
    with open(path, 'rb') as f:
        f.seek(max(0, osp.getsize(path) - 256))
        tail = f.read().rstrip()
    if not tail.endswith((b'}', b']')):
        end = tail[-40:].decode('utf-8', errors='replace')
        raise DatasetNotFoundError(
            f'annotation file {path} is cut short: it ends with {end!r} instead of the closing bracket of its '
            f'JSON (a download or copy that did not finish?). Copy it again.')


def _annotation_files(cfg: Config, loaders) -> List[str]:
    """The JSON annotation files of the loaders' datasets and of the matching evaluators (e.g. CocoMetric)."""
    files = [osp.join(dataset.get('data_root') or '', dataset['ann_file'])
             for dataset in iter_datasets(cfg, loaders) if dataset.get('ann_file')]
    for loader in loaders:
        evaluator = cfg.get(loader.replace('dataloader', 'evaluator'))
        for metric in (evaluator if isinstance(evaluator, list) else [evaluator]):
            if isinstance(metric, dict) and isinstance(metric.get('ann_file'), str):
                files.append(metric['ann_file'])
    return [path for path in dict.fromkeys(files) if path.endswith('.json')]


def check_datasets(cfg: Config, loaders) -> None:
    """Stops with a message naming the missing path and the fix, before any dataset class runs.

    Also stops when an annotation file an evaluator reads is missing, or a
    JSON annotation file is cut short (:func:`check_json_complete`).
    """
    for dataset in iter_datasets(cfg, loaders):
        for path in _dataset_paths(dataset):
            if osp.exists(path):
                continue
            dataset_type = str(dataset.get('type', 'the dataset')).split('.')[-1]
            layout = EXPECTED_LAYOUTS.get(dataset_type, 'the layout its dataset class documents')
            raise DatasetNotFoundError(
                f'{dataset_type} data not found: {path} does not exist.\n'
                f'  Expected: {layout}.\n'
                f'  Put the data there (a symlink works), or point the config elsewhere with\n'
                f'  --cfg-options data_root=/path/to/your/copy/')
    for path in _annotation_files(cfg, loaders):
        if not osp.isfile(path):
            raise DatasetNotFoundError(f'annotation file {path} does not exist (the evaluator reads it). Put it '
                                       f'there, or point the config elsewhere with --cfg-options data_root=...')
        check_json_complete(path)


def _newest_complete_checkpoint(directory: str, exclude: str) -> Optional[str]:
    checkpoints = sorted(glob.glob(osp.join(directory, '*.pth')), key=osp.getmtime, reverse=True)
    return next((path for path in checkpoints if path != exclude and not is_incomplete_checkpoint(path)), None)


def check_resume_checkpoint(cfg: Config) -> None:
    """Stops before training when ``--resume`` without a path would continue from a broken checkpoint.

    mmengine resumes from the checkpoint that the work dir's ``last_checkpoint``
    names. When that file is missing or incomplete (a crash while it was
    written, a copy cut short), the error names the newest complete checkpoint
    beside it to resume from instead.

    Raises:
        CheckpointError: The latest checkpoint is missing (an
            :class:`IncompleteCheckpointError` when it is incomplete).
    """
    record = osp.join(cfg.work_dir, 'last_checkpoint')
    if not cfg.get('resume') or cfg.get('load_from') or not osp.isfile(record):
        return
    with open(record) as f:
        latest = f.read().strip()
    if latest and osp.isfile(latest) and not is_incomplete_checkpoint(latest):
        return
    directory = osp.dirname(latest) or cfg.work_dir
    previous = _newest_complete_checkpoint(directory, exclude=latest)
    fix = (f'Resume from the newest complete checkpoint instead: --resume {previous}' if previous else
           f'No complete checkpoint is left in {directory}: train without --resume to start over.')
    if latest and osp.isfile(latest):
        raise IncompleteCheckpointError(incomplete_checkpoint_message(latest, f'{record} names it. {fix}'))
    raise CheckpointError(f'--resume continues from the checkpoint that {record} names, and there is none at '
                          f'{latest!r}. {fix}')


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


def build_runner(cfg: Config, config_path: str, work_dir: Optional[str], launcher: str, loaders,
                 allow_partial: bool = False):
    """The Runner of tools/train.py and tools/test.py.

    Sets the work dir (``work_dir``, else the config's, else
    ``work_dirs/<config name>``), checks the datasets of ``loaders``, the
    checkpoint ``--resume`` would continue from, the model config
    (:func:`check_model_config`), that the checkpoint the Runner will load
    fits the model (:func:`~mmlavit.cli.checkpoint_fit.check_checkpoint_fits`, ``allow_partial`` passed on)
    and the distributed set-up, then builds the Runner (``runner_type`` if
    the config names one). The checks come first, so that a run they stop
    writes nothing into the work dir.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    check_datasets(cfg, loaders)
    check_resume_checkpoint(cfg)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = cfg.model.get('module', cfg.model)  # a test-time augmentation model: the one it wraps
    check_model_config(model_cfg)
    checkpoint = checkpoint_to_load(cfg)
    if checkpoint:
        check_checkpoint_file(checkpoint, '--resume' if cfg.get('resume') else 'load_from')
        check_checkpoint_fits(MODELS.build(model_cfg), checkpoint, allow_partial)
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
