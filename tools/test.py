"""Evaluate a checkpoint of an mmdet, mmseg or mmpretrain model (the config's default_scope decides).

    python tools/test.py configs/upernet_lavit_s_ade20k.py work_dirs/.../iter_160000.pth
        [--work-dir DIR] [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import os.path as osp
import sys

import mmlavit  # noqa: F401  registers LaViT, DPLossHook and the checkpoint loader
from mmlavit.cli.runner import DatasetNotFoundError, build_runner, load_config, parse_runner_args


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
    try:
        runner = build_runner(cfg, args.config, args.work_dir, args.launcher, ['test_dataloader'])
    except DatasetNotFoundError as error:
        sys.exit(f'error: {error}')
    runner.test()


if __name__ == '__main__':
    main()
