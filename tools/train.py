"""Train an mmdet, mmseg or mmpretrain model (the config's default_scope decides).

    python tools/train.py configs/mask_rcnn_lavit_s_coco.py [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import sys

import mmlavit  # noqa: F401  registers LaViT, DPLossHook and the safe checkpoint loader
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.runner import build_runner, load_config, parse_runner_args


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model with mmengine\'s Runner')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the work dir '
                             'when no path is given')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (needs a GPU)')
    return parse_runner_args(parser)


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            sys.exit('--amp needs a GPU: mmengine\'s AmpOptimWrapper does not run on CPU.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    with exit_on_user_error():
        build_runner(cfg, args.config, args.work_dir, args.launcher, loaders).train()


if __name__ == '__main__':
    main()
