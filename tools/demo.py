"""`make demo`: a LaViT Mask R-CNN learns on a laptop CPU, end to end, with the user-facing tools.

Generates the shapes set (data/shapes_coco, once), trains
configs/demo/mask_rcnn_lavit_t_shapes.py with tools/train.py (once: a second
run reuses the checkpoint; delete work_dirs/demo_mask_rcnn to retrain),
evaluates it with tools/test.py (mmdet's CocoMetric, bbox and segm AP) and
draws one validation image with tools/infer.py.
"""
import os.path as osp
import re
import time

from mmlavit.cli.demo_data import make_coco_shapes
from mmlavit.cli.tool_process import REPO, run_tool_or_exit, train_once

CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
DATA = 'data/shapes_coco'
WORK_DIR = 'work_dirs/demo_mask_rcnn'
OUT_DIR = 'outputs/demo'


def main():
    start = time.time()
    if not osp.isfile(osp.join(REPO, DATA, 'annotations', 'instances_val2017.json')):
        make_coco_shapes(osp.join(REPO, DATA))
        print(f'generated the shapes dataset in {DATA}')
    checkpoint = train_once(CONFIG, WORK_DIR)
    train_minutes = (time.time() - start) / 60
    output = run_tool_or_exit('tools/test.py', CONFIG, checkpoint, '--work-dir', WORK_DIR)
    metrics = dict(re.findall(r'coco/(bbox_mAP|segm_mAP): ([0-9.]+)', output))
    picture = osp.join(DATA, 'val2017', '000001.jpg')
    run_tool_or_exit('tools/infer.py', picture, CONFIG, checkpoint, '--out', OUT_DIR)
    print('\n==== mmlavit demo ====')
    print(f'data:        {DATA} (COCO format, 3 classes)')
    print(f'config:      {CONFIG}')
    print(f'checkpoint:  {checkpoint} (logs beside it)')
    print(f'bbox mAP:    {metrics.get("bbox_mAP")}   segm mAP: {metrics.get("segm_mAP")}')
    print(f'picture:     {osp.join(OUT_DIR, osp.basename(picture))}')
    print(f'time:        {(time.time() - start) / 60:.1f} min ({train_minutes:.1f} min to train)')


if __name__ == '__main__':
    main()
