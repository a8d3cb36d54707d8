"""Training with mmengine's Runner, for mmdet, mmseg and mmpretrain models alike (tools/train.py).

The config's default_scope decides the framework. Before the Runner is
built, the config, its model, its data, the checkpoint it would load, its
output paths and its work dir are checked (:func:`~mmlavit.cli.runner.check_run`,
:func:`~mmlavit.cli.outputs.check_outputs`,
:func:`~mmlavit.cli.work_dir.check_work_dir`); the run then holds the work
dir's lock, and saves its checkpoints whole (:mod:`mmlavit.cli.safe_checkpoint`).
"""
import argparse
import os
import os.path as osp

import torch

from .errors import ToolArgumentError
from .model_checks import ConfigError
from .outputs import check_outputs, config_inputs
from .runner import (
    add_allow_partial_option,
    check_run,
    load_config,
    make_runner,
    parse_runner_args,
    set_work_dir,
)
from .work_dir import check_work_dir, lock_work_dir

#: The rank of a process under each launcher, from the variables it sets.
_RANK_VARIABLES = {'pytorch': 'RANK', 'slurm': 'SLURM_PROCID', 'mpi': 'OMPI_COMM_WORLD_RANK'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model with mmengine\'s Runner')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the work dir '
                             'when no path is given')
    parser.add_argument('--start-over', action='store_true',
                        help='start a new run in a work dir that holds the checkpoints of an earlier run: they are '
                             'moved into a subfolder of it first')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the total batch size over the config\'s '
                             'auto_scale_lr.base_batch_size')
    add_allow_partial_option(parser)
    return parse_runner_args(parser, argv)


def enable_auto_scale_lr(cfg) -> None:
    """mmengine's Runner multiplies the lr by (processes x batch per process) / base_batch_size when enabled."""
    if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
        raise ConfigError('--auto-scale-lr scales the lr from the batch the config sets it for, and the config '
                          'states none: add auto_scale_lr = dict(enable=False, base_batch_size=N)')
    cfg.auto_scale_lr.enable = True


def check_amp(cfg, amp: bool) -> None:
    """Mixed precision with mmengine's AmpOptimWrapper (``--amp``, or named in the config) needs a GPU."""
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if 'AmpOptimWrapper' in str(cfg.optim_wrapper.get('type')) and not torch.cuda.is_available():
        raise ToolArgumentError(f'{"--amp" if amp else "optim_wrapper.type=AmpOptimWrapper"} needs a GPU: '
                                f'mmengine\'s AmpOptimWrapper does not run on CPU. Train in float32 on CPU.')


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    check_amp(cfg, args.amp)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    work_dir = set_work_dir(cfg, args.config, args.work_dir)
    if args.resume is not None:
        # --resume alone continues from the work dir's last checkpoint, whatever load_from the config names.
        cfg.resume, cfg.load_from = True, None if args.resume == 'auto' else args.resume
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    # The Runner writes its copy of the config into the work dir, under the config's name.
    check_outputs([('--work-dir', work_dir), ('--work-dir', osp.join(work_dir, osp.basename(args.config)))],
                  config_inputs(cfg, args.config, loaders, cfg.get('load_from')))
    check_work_dir(cfg, args.resume, args.start_over)
    main_process = os.environ.get(_RANK_VARIABLES.get(args.launcher, ''), '0') == '0'
    check_run(cfg, loaders, args.allow_partial_checkpoint)
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook and str(checkpoint_hook.get('type')).split('.')[-1] == 'CheckpointHook':
        checkpoint_hook['type'] = 'mmlavit.SafeCheckpointHook'
    release = lock_work_dir(cfg, args.resume, args.start_over) if main_process else None
    try:
        make_runner(cfg, args.launcher).train()
    finally:
        if release is not None:
            release()
