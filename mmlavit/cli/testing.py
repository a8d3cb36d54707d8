"""Testing a checkpoint with mmengine's Runner (tools/test.py), and what the tool adds to it: test-time
augmentation, predictions written to a file and drawn predictions, as mmdet's, mmseg's and mmpretrain's own
tools/test.py define ``--tta``, ``--out`` and ``--show-dir``."""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric, DumpResults

from .datasets import iter_datasets
from .errors import ToolArgumentError
from .model_checks import ConfigError
from .outputs import check_outputs, config_inputs
from .runner import (
    add_allow_partial_option,
    check_checkpoint_file,
    check_run,
    load_config,
    make_runner,
    parse_runner_args,
    set_work_dir,
)

PICKLE_SUFFIXES = ('.pkl', '.pickle')


def predicts_masks(model_cfg: dict) -> bool:
    """Whether a detector config predicts instance masks (Mask R-CNN's mask head, or a mask head of its own)."""
    roi_head = model_cfg.get('roi_head')
    return bool(model_cfg.get('mask_head') or (isinstance(roi_head, dict) and roi_head.get('mask_head')))


def apply_tta(cfg: Config, config_path: str) -> None:
    """Tests with the config's test-time augmentation: ``tta_pipeline`` feeds ``tta_model``, which wraps the model.

    As mmseg's tools/test.py does it; mmdet's and mmpretrain's fall back to a
    flip-only default where the config has none, this refuses instead, so
    that a number reported as TTA is the config's.

    Raises:
        ConfigError: The config has no ``tta_model`` or ``tta_pipeline`` (or
            sets them to None), or it pairs mmdet's DetTTAModel, which merges
            boxes only, with a detector that predicts masks.
    """
    missing = [key for key in ('tta_model', 'tta_pipeline') if cfg.get(key) is None]
    if missing:
        example = (' (as configs/mask-rcnn_lavit-s_fpn_1x_coco.py has them for Mask R-CNN)'
                   if predicts_masks(cfg.model) else '')
        raise ConfigError(f'--tta tests with the config\'s tta_model and tta_pipeline, and {config_path} has no '
                          f'{" and no ".join(missing)}. Test without --tta, or add them to the config{example}')
    if str(cfg.tta_model.get('type', '')).split('.')[-1] == 'DetTTAModel' and predicts_masks(cfg.model):
        raise ConfigError(f'--tta: {config_path} pairs DetTTAModel, which merges boxes only, with a detector that '
                          f'predicts instance masks; use type=\'mmlavit.InstanceSegTTAModel\' (custom_imports '
                          f'\'mmlavit.instance_tta\', as configs/mask-rcnn_lavit-s_fpn_1x_coco.py does)')
    for dataset in iter_datasets(cfg, ['test_dataloader']):
        dataset['pipeline'] = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def show_predictions(cfg: Config, show_dir: str) -> str:
    """Has the visualization hook draw every test image's predictions under ``show_dir``.

    As each framework's tools/test.py ``--show-dir`` does, with two changes:
    every image is drawn (mmseg's hook draws every 50th by default), and a
    relative ``show_dir`` is taken from the current directory, not from
    mmdet's work_dir/timestamp.

    Returns:
        str: The directory the drawn images will be in.

    Raises:
        ConfigError: The config has no ``default_hooks.visualization``.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ConfigError('--show-dir draws with the visualization hook, and the config has none: add '
                          'default_hooks.visualization (e.g. dict(type=\'DetVisualizationHook\'))')
    show_dir = osp.abspath(show_dir)
    scope = cfg.get('default_scope')
    if scope == 'mmseg':
        hook.update(draw=True, interval=1)
        cfg.visualizer['save_dir'] = show_dir
        return osp.join(show_dir, 'vis_data', 'vis_image')
    if scope == 'mmpretrain':
        hook.update(enable=True, interval=1, out_dir=show_dir)
        return show_dir
    hook.update(draw=True, test_out_dir=show_dir)
    return show_dir


class DumpSegResults(DumpResults):
    """mmengine's DumpResults for segmentors: per image its class map and meta, without logits or ground truth.

    As mmdet's DumpDetResults compresses masks, the per-class logits
    (classes x H x W floats) are left out and the class map
    (``pred_sem_seg.data``, 1 x H x W) is stored as uint8 when every class
    index fits: with the logits a pickle of ADE20K's 2000 validation images
    would take hundreds of gigabytes, with int64 class maps 5.6 GB.
    """

    def process(self, data_batch, predictions: Sequence[dict]) -> None:
        for prediction in predictions:
            prediction.pop('seg_logits', None)
            prediction.pop('gt_sem_seg', None)
            labels = prediction['pred_sem_seg']['data']
            if labels.numel() and int(labels.max()) < 256:
                prediction['pred_sem_seg']['data'] = labels.to(torch.uint8)
        super().process(data_batch, predictions)


def prediction_dump(cfg: Config, out: str) -> Optional[BaseMetric]:
    """What writes the test's predictions to ``out``, as each framework's tools/test.py ``--out`` does.

    A ``.pkl``/``.pickle`` file gets one entry per test image, as
    ``mmengine.load`` reads it back: mmdet's DumpDetResults (masks as RLE),
    :class:`DumpSegResults` for segmentors, mmengine's DumpResults for
    classifiers. For a segmentor any other path is a directory into which
    mmseg's IoUMetric writes one prediction PNG per image (mmseg's ``--out``);
    that is set in ``cfg``, before the Runner is built.

    Returns:
        BaseMetric | None: The metric to append to the Runner's test
        evaluator; None when ``cfg`` itself now writes the predictions.

    Raises:
        ToolArgumentError: A path other than a pickle file for a detector or classifier.
    """
    scope = cfg.get('default_scope')
    if not out.endswith(PICKLE_SUFFIXES):
        if scope != 'mmseg':
            raise ToolArgumentError(f'--out {out}: predictions are written to a pickle file, give a path ending '
                                    f'with .pkl')
        cfg.test_evaluator.update(output_dir=out, keep_results=True)
        return None
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out)
    return DumpSegResults(out_file_path=out) if scope == 'mmseg' else DumpResults(out_file_path=out)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint with mmengine\'s Runner')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--tta', action='store_true',
                        help='test with the config\'s test-time augmentation (tta_model and tta_pipeline)')
    parser.add_argument('--out', help='write the predictions to this pickle file (for a segmentor, a path '
                                      'without .pkl is a directory for one prediction PNG per image)')
    parser.add_argument('--show-dir', help='draw the predictions on every test image into this directory')
    add_allow_partial_option(parser)
    return parse_runner_args(parser, argv)


def check_out_parent(option: str, path: str) -> None:
    """Creates the folder an output file goes into; stops when a file stands where that folder should be."""
    parent = osp.dirname(osp.abspath(path))
    if osp.exists(parent) and not osp.isdir(parent):
        raise ToolArgumentError(f'{option} {path}: {parent} is a file, not a folder to write into')
    os.makedirs(parent, exist_ok=True)


def main(argv=None):
    args = parse_args(argv)
    check_checkpoint_file(args.checkpoint)
    cfg = load_config(args.config, args.cfg_options)
    cfg.load_from = args.checkpoint
    work_dir = set_work_dir(cfg, args.config, args.work_dir)
    outputs = [('--work-dir', work_dir)] + [(option, path) for option, path in
                                           (('--out', args.out), ('--show-dir', args.show_dir)) if path]
    check_outputs(outputs, config_inputs(cfg, args.config, ['test_dataloader'], args.checkpoint))
    if args.out:
        check_out_parent('--out', args.out)
    drawn_into = show_predictions(cfg, args.show_dir) if args.show_dir else None
    if args.tta:
        apply_tta(cfg, args.config)
    dump = prediction_dump(cfg, args.out) if args.out else None
    check_run(cfg, ['test_dataloader'], args.allow_partial_checkpoint)
    runner = make_runner(cfg, args.launcher)
    if dump is not None:
        runner.test_evaluator.metrics.append(dump)
    runner.test()
    if drawn_into:
        print(f'Predictions drawn into {drawn_into}')
