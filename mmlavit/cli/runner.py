"""What the tools share: arguments, config loading, building a config's model, CPU distributed set-up, data
and resume checks."""
import argparse
import glob
import os
import os.path as osp
from typing import Iterator, List, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

from mmlavit.utils import CheckpointError, IncompleteCheckpointError, incomplete_checkpoint_message, \
    is_incomplete_checkpoint

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


def parse_runner_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Adds the options every Runner tool takes (--work-dir, --cfg-options, --launcher) and parses."""
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. data_root=/data/coco/ '
                             'train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


class DatasetNotFoundError(FileNotFoundError):
    """A config points at a dataset that is not on disk."""


def load_config(config_path: str, cfg_options: Optional[dict] = None) -> Config:
    """Reads a config and merges ``--cfg-options``.

    ``data_root=PATH`` among the options also moves every dataset, and every
    evaluator annotation file, that used the config's own ``data_root`` there
    (a config's ``data_root`` variable is substituted into the dataset dicts
    when the file is read, so changing the variable alone would move nothing).
    """
    if not osp.isfile(config_path):
        raise FileNotFoundError(f'config file {config_path} does not exist')
    cfg = Config.fromfile(config_path)
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


def build_model(config_path: str, checkpoint: Optional[str] = None, cfg_options: Optional[dict] = None):
    """The config's model, built in its default scope, in eval mode, with the checkpoint's weights if given."""
    cfg = load_config(config_path, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    model.eval()
    return model


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


def check_datasets(cfg: Config, loaders) -> None:
    """Stops with a message naming the missing path and the fix, before any dataset class runs."""
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


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Prepares ``cfg`` for ``launcher``; on a machine without CUDA, gloo and a device-less DDP.

    mmengine 0.10.7's pytorch launcher calls ``torch.cuda.set_device`` and wraps
    the model with ``device_ids=[LOCAL_RANK]``; both fail without CUDA. The
    gloo group is initialised here instead (the Runner then skips its own
    ``init_dist``) and DDP gets ``device_ids=None``.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def build_runner(cfg: Config, config_path: str, work_dir: Optional[str], launcher: str, loaders):
    """The Runner of tools/train.py and tools/test.py.

    Sets the work dir (``work_dir``, else the config's, else
    ``work_dirs/<config name>``), checks the datasets of ``loaders``, the
    checkpoint ``--resume`` would continue from and the distributed set-up,
    then builds the Runner (``runner_type`` if the config names one).
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    check_datasets(cfg, loaders)
    check_resume_checkpoint(cfg)
    setup_distributed(cfg, launcher)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
