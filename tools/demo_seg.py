"""`make demo-seg`: UperNet LaViT-T trained from scratch on CPU on generated shapes, then tested.

Generates the ADE20K-layout shapes set under data/ (only if it is missing),
trains configs/demo/upernet_lavit_t_shapes_ade.py with tools/train.py (once: a
second run reuses the checkpoint; delete work_dirs/upernet_lavit_t_shapes_ade
to retrain), tests it with tools/test.py and prints mIoU, mAcc and aAcc.
"""
import os.path as osp
import re
import sys
import time

from mmengine.config import Config

from mmlavit.cli.demo_data import make_ade_shapes
from mmlavit.cli.tool_process import REPO, run_tool_or_exit, train_once

CONFIG = 'configs/demo/upernet_lavit_t_shapes_ade.py'
WORK_DIR = 'work_dirs/upernet_lavit_t_shapes_ade'
METRICS = ('mIoU', 'mAcc', 'aAcc')


def ensure_data(data_root: str) -> None:
    """Writes the shapes set unless it is already there (the validation labels are written last)."""
    if osp.isdir(osp.join(REPO, data_root, 'annotations', 'validation')):
        print(f'Using the generated data in {data_root}')
        return
    print(f'Generating the shapes set in {data_root} ...')
    make_ade_shapes(osp.join(REPO, data_root), seed=0)


def parse_metrics(test_output: str) -> dict:
    """mmseg's IoUMetric summary line (values in percent) as {name: fraction}."""
    metrics = {}
    for name in METRICS:
        found = re.findall(rf'{name}: ([\d.]+)', test_output)
        if not found:
            sys.exit(f'error: tools/test.py printed no {name}')
        metrics[name] = float(found[-1]) / 100
    return metrics


def main():
    start = time.time()
    data_root = Config.fromfile(osp.join(REPO, CONFIG)).data_root
    ensure_data(data_root)
    checkpoint = train_once(CONFIG, WORK_DIR)
    test_output = run_tool_or_exit('tools/test.py', CONFIG, checkpoint, '--work-dir', WORK_DIR)
    metrics = parse_metrics(test_output)
    minutes = (time.time() - start) / 60
    print('UperNet LaViT-T on the generated shapes (validation split): ' +
          '  '.join(f'{name} {value:.3f}' for name, value in metrics.items()))
    print(f'  data: {data_root}\n  config: {CONFIG}\n  checkpoint: {checkpoint}\n'
          f'  logs: {WORK_DIR}\n  wall time: {minutes:.1f} min')


if __name__ == '__main__':
    main()
