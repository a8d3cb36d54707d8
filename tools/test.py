"""Evaluate a checkpoint of an mmdet, mmseg or mmpretrain model (the config's default_scope decides).

    python tools/test.py configs/upernet_lavit_s_ade20k.py work_dirs/.../iter_160000.pth
        [--work-dir DIR] [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import os.path as osp
import sys

import mmlavit  # noqa: F401  registers LaViT, DPLossHook and the safe checkpoint loader
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.runner import build_runner, load_config, parse_runner_args


def parse_args():
    parser = argparse.ArgumentParser(description='Test a checkpoint with mmengine\'s Runner')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    return parse_runner_args(parser)


def main():
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.cfg_options)
    cfg.load_from = args.checkpoint
    with exit_on_user_error():
        build_runner(cfg, args.config, args.work_dir, args.launcher, ['test_dataloader']).test()


if __name__ == '__main__':
    main()
