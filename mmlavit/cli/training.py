"""Training with mmengine's Runner, for mmdet, mmseg and mmpretrain models alike (tools/train.py).

The config's default_scope decides the framework. Before the Runner is
built, the config, its model, its data and the checkpoint it would load are
checked (:func:`~mmlavit.cli.runner.build_runner`).
"""
import argparse
import sys

from .model_checks import ConfigError
from .runner import add_allow_partial_option, build_runner, load_config, parse_runner_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model with mmengine\'s Runner')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the work dir '
                             'when no path is given')
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


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            sys.exit('error: --amp needs a GPU: mmengine\'s AmpOptimWrapper does not run on CPU.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    build_runner(cfg, args.config, args.work_dir, args.launcher, loaders, args.allow_partial_checkpoint).train()
