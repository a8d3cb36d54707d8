"""`make demo` and `make demo-seg`: LaViT learns on a laptop CPU, end to end, with the user-facing tools.

The detection demo generates the COCO-format shapes set (data/shapes_coco,
once), trains configs/demo/mask_rcnn_lavit_t_shapes.py with tools/train.py
(once: a second run reuses the checkpoint; delete work_dirs/demo_mask_rcnn to
retrain), evaluates it with tools/test.py (mmdet's CocoMetric, bbox and segm
AP) and draws one validation image with tools/infer.py.

The segmentation demo generates the ADE20K-layout shapes set (once), trains
configs/demo/upernet_lavit_t_shapes_ade.py (once; delete
work_dirs/upernet_lavit_t_shapes_ade to retrain), tests it with tools/test.py
and prints mIoU, mAcc and aAcc.
"""
import os.path as osp
import re
import sys
import time

from mmengine.config import Config

from .demo_data import make_ade_shapes, make_coco_shapes
from .tool_process import REPO, run_tool_or_exit, train_once

DET_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
DET_DATA = 'data/shapes_coco'
DET_WORK_DIR = 'work_dirs/demo_mask_rcnn'
DET_OUT_DIR = 'outputs/demo'


def ensure_data(data_root: str, last_written: str, make) -> None:
    """Writes a generated set with ``make(root)`` unless its last written part is already there."""
    if osp.exists(osp.join(REPO, data_root, last_written)):
        print(f'Using the generated data in {data_root}')
        return
    print(f'Generating the shapes set in {data_root} ...')
    make(osp.join(REPO, data_root))


def detection_demo():
    """Trains, evaluates and draws the Mask R-CNN LaViT-T demo; prints bbox and segm mAP."""
    start = time.time()
    ensure_data(DET_DATA, 'annotations/instances_val2017.json', make_coco_shapes)
    checkpoint = train_once(DET_CONFIG, DET_WORK_DIR)
    train_minutes = (time.time() - start) / 60
    output = run_tool_or_exit('tools/test.py', DET_CONFIG, checkpoint, '--work-dir', DET_WORK_DIR)
    metrics = dict(re.findall(r'coco/(bbox_mAP|segm_mAP): ([0-9.]+)', output))
    picture = osp.join(DET_DATA, 'val2017', '000001.jpg')
    run_tool_or_exit('tools/infer.py', picture, DET_CONFIG, checkpoint, '--out', DET_OUT_DIR)
    print('\n==== mmlavit demo ====')
    print(f'data:        {DET_DATA} (COCO format, 3 classes)')
    print(f'config:      {DET_CONFIG}')
    print(f'checkpoint:  {checkpoint} (logs beside it)')
    print(f'bbox mAP:    {metrics.get("bbox_mAP")}   segm mAP: {metrics.get("segm_mAP")}')
    print(f'picture:     {osp.join(DET_OUT_DIR, osp.basename(picture))}')
    print(f'time:        {(time.time() - start) / 60:.1f} min ({train_minutes:.1f} min to train)')


SEG_CONFIG = 'configs/demo/upernet_lavit_t_shapes_ade.py'
SEG_WORK_DIR = 'work_dirs/upernet_lavit_t_shapes_ade'
SEG_METRICS = ('mIoU', 'mAcc', 'aAcc')


def parse_metrics(test_output: str) -> dict:
    """mmseg's IoUMetric summary line (values in percent) as {name: fraction}."""
    metrics = {}
    for name in SEG_METRICS:
        found = re.findall(rf'{name}: ([\d.]+)', test_output)
        if not found:
            sys.exit(f'error: tools/test.py printed no {name}')
        metrics[name] = float(found[-1]) / 100
    return metrics


def segmentation_demo():
    """Trains and tests the UperNet LaViT-T demo; prints mIoU, mAcc and aAcc."""
    start = time.time()
    data_root = Config.fromfile(osp.join(REPO, SEG_CONFIG)).data_root
    ensure_data(data_root, 'annotations/validation', make_ade_shapes)
    checkpoint = train_once(SEG_CONFIG, SEG_WORK_DIR)
    test_output = run_tool_or_exit('tools/test.py', SEG_CONFIG, checkpoint, '--work-dir', SEG_WORK_DIR)
    metrics = parse_metrics(test_output)
    minutes = (time.time() - start) / 60
    print('UperNet LaViT-T on the generated shapes (validation split): ' +
          '  '.join(f'{name} {value:.3f}' for name, value in metrics.items()))
    print(f'  data: {data_root}\n  config: {SEG_CONFIG}\n  checkpoint: {checkpoint}\n'
          f'  logs: {SEG_WORK_DIR}\n  wall time: {minutes:.1f} min')
