"""Evaluate a checkpoint of an mmdet, mmseg or mmpretrain model (the config's default_scope decides).

    python tools/test.py configs/upernet_lavit-s_8xb2-160k_ade20k-512x512.py work_dirs/.../iter_160000.pth
        [--tta] [--out FILE.pkl] [--show-dir DIR] [--allow-partial-checkpoint]
        [--work-dir DIR] [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse

import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.runner import (
    add_allow_partial_option,
    build_runner,
    check_checkpoint_file,
    load_config,
    parse_runner_args,
)
from mmlavit.cli.testing import apply_tta, prediction_dump, show_predictions


def parse_args():
    parser = argparse.ArgumentParser(description='Test a checkpoint with mmengine\'s Runner')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--tta', action='store_true',
                        help='test with the config\'s test-time augmentation (tta_model and tta_pipeline)')
    parser.add_argument('--out', help='write the predictions to this pickle file (for a segmentor, a path '
                                      'without .pkl is a directory for one prediction PNG per image)')
    parser.add_argument('--show-dir', help='draw the predictions on every test image into this directory')
    add_allow_partial_option(parser)
    return parse_runner_args(parser)


def main():
    args = parse_args()
    with exit_on_user_error():
        check_checkpoint_file(args.checkpoint)
        cfg = load_config(args.config, args.cfg_options)
        cfg.load_from = args.checkpoint
        drawn_into = show_predictions(cfg, args.show_dir) if args.show_dir else None
        if args.tta:
            apply_tta(cfg, args.config)
        dump = prediction_dump(cfg, args.out) if args.out else None
        runner = build_runner(cfg, args.config, args.work_dir, args.launcher, ['test_dataloader'],
                              args.allow_partial_checkpoint)
        if dump is not None:
            runner.test_evaluator.metrics.append(dump)
        runner.test()
    if drawn_into:
        print(f'Predictions drawn into {drawn_into}')


if __name__ == '__main__':
    main()
