"""`make demo`: a LaViT Mask R-CNN learns on a laptop CPU, end to end, with the user-facing tools.

Generates the shapes set (data/shapes_coco, once), trains
configs/demo/mask_rcnn_lavit_t_shapes.py with tools/train.py (once: a second
run reuses the checkpoint; delete work_dirs/demo_mask_rcnn to retrain),
evaluates it with tools/test.py (mmdet's CocoMetric, bbox and segm AP) and
draws one validation image with tools/infer.py.
"""
import os.path as osp
import re
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from mmlavit.demo_data import make_coco_shapes  # noqa: E402

CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
DATA = 'data/shapes_coco'
WORK_DIR = 'work_dirs/demo_mask_rcnn'
OUT_DIR = 'outputs/demo'


def run(*args):
    """Runs a tool, streaming its output, and returns that output."""
    command = [sys.executable, *args]
    print('$', ' '.join(command), flush=True)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
    if process.wait():
        sys.exit(f'demo: {args[0]} failed with exit code {process.returncode}')
    return ''.join(lines)


def main():
    start = time.time()
    if not osp.isfile(osp.join(ROOT, DATA, 'annotations', 'instances_val2017.json')):
        make_coco_shapes(osp.join(ROOT, DATA))
        print(f'generated the shapes dataset in {DATA}')
    checkpoint = osp.join(WORK_DIR, 'epoch_8.pth')
    if osp.isfile(osp.join(ROOT, checkpoint)):
        print(f'found {checkpoint}; delete {WORK_DIR} to train again')
    else:
        run('tools/train.py', CONFIG, '--work-dir', WORK_DIR)
    train_minutes = (time.time() - start) / 60
    output = run('tools/test.py', CONFIG, checkpoint, '--work-dir', WORK_DIR)
    metrics = dict(re.findall(r'coco/(bbox_mAP|segm_mAP): ([0-9.]+)', output))
    picture = osp.join(DATA, 'val2017', '000001.jpg')
    run('tools/infer.py', picture, CONFIG, checkpoint, '--out', OUT_DIR)
    print('\n==== mmlavit demo ====')
    print(f'data:        {DATA} (COCO format, 3 classes)')
    print(f'config:      {CONFIG}')
    print(f'checkpoint:  {checkpoint} (logs beside it)')
    print(f'bbox mAP:    {metrics.get("bbox_mAP")}   segm mAP: {metrics.get("segm_mAP")}')
    print(f'picture:     {osp.join(OUT_DIR, osp.basename(picture))}')
    print(f'time:        {(time.time() - start) / 60:.1f} min ({train_minutes:.1f} min to train)')


if __name__ == '__main__':
    main()
