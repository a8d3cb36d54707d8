"""Draw a detector's predicted boxes and masks on an image.

    python tools/infer.py IMAGE CONFIG CHECKPOINT --out DIR [--score-thr 0.3] [--device cpu]
"""
import argparse
import os
import os.path as osp
import sys

import mmcv
from mmdet.apis import inference_detector, init_detector
from mmdet.registry import VISUALIZERS

import mmlavit  # noqa: F401  registers LaViT and the safe checkpoint loader
from mmlavit.cli.errors import exit_on_user_error


def parse_args():
    parser = argparse.ArgumentParser(description='Draw detections on an image')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='detector config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='directory for the drawn picture')
    parser.add_argument('--score-thr', type=float, default=0.3, help='drop detections below this score')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    return parser.parse_args()


def main():
    args = parse_args()
    for path in (args.image, args.config, args.checkpoint):
        if not osp.isfile(path):
            sys.exit(f'error: {path} does not exist')
    with exit_on_user_error():
        model = init_detector(args.config, args.checkpoint, device=args.device)
        result = inference_detector(model, args.image)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    os.makedirs(args.out, exist_ok=True)
    out_file = osp.join(args.out, osp.basename(args.image))
    image = mmcv.imconvert(mmcv.imread(args.image), 'bgr', 'rgb')
    visualizer.add_datasample('result', image, data_sample=result, draw_gt=False, show=False,
                              out_file=out_file, pred_score_thr=args.score_thr)
    kept = int((result.pred_instances.scores >= args.score_thr).sum())
    print(f'{kept} detections with score >= {args.score_thr} drawn into {out_file}')


if __name__ == '__main__':
    main()
