"""Prediction on an image or a folder of images, drawn as each framework draws it (tools/infer.py).

The config's default_scope decides what runs: a detector's boxes and masks (mmdet's inference_detector and
DetLocalVisualizer), a segmentor's class map (mmseg's inference_model and SegLocalVisualizer), or a
classifier's class and score (mmpretrain's test pipeline and UniversalVisualizer).

    python tools/infer.py IMAGE_OR_FOLDER CONFIG CHECKPOINT --out DIR [--score-thr 0.3] [--device cpu]
"""
import argparse
import copy
import os
import os.path as osp
from typing import List

import mmcv
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DATASETS

from .datasets import iter_datasets
from .errors import ToolArgumentError
from .outputs import check_outputs
from .runner import add_allow_partial_option, build_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw a detector\'s, segmentor\'s or classifier\'s prediction '
                                                 'on an image')
    parser.add_argument('image', help='image file, or a folder of images')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='directory for the drawn pictures (one per image, by its name)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detectors: drop detections below this score')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    add_allow_partial_option(parser)
    return parser.parse_args(argv)


def _test_pipeline(cfg: Config) -> list:
    return next(iter_datasets(cfg, ['test_dataloader']))['pipeline']


def load_model(config: str, checkpoint: str, device: str, allow_partial: bool):
    """The config's model with the checkpoint's weights (:func:`build_model`), on ``device``.

    Its ``dataset_meta`` (classes, palette) is the checkpoint's, completed by
    the test dataset's metainfo, whose palette comes first (as mmdet's
    init_detector orders them).
    """
    model = revert_sync_batchnorm(build_model(config, checkpoint, allow_partial=allow_partial))
    meta = {key.lower(): value for key, value in (model.dataset_meta or {}).items()}
    dataset_cfg = copy.deepcopy(next(iter_datasets(model.cfg, ['test_dataloader'])))
    dataset_cfg['lazy_init'] = True  # only its metainfo: no annotation file is read
    for key, value in DATASETS.build(dataset_cfg).metainfo.items():
        if value is not None and (key == 'palette' or key not in meta):
            meta[key] = value
    model.dataset_meta = meta
    return model.to(device)


def _visualizer(model):
    """The config's visualizer without its storage backends: the picture goes to the file given."""
    from mmengine.registry import VISUALIZERS
    visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    return visualizer


def draw_detections(model, image: str, out_file: str, score_thr: float) -> str:
    from mmdet.apis import inference_detector
    result = inference_detector(model, image)
    _visualizer(model).add_datasample('result', mmcv.imread(image, channel_order='rgb'), data_sample=result,
                                      draw_gt=False, show=False, out_file=out_file, pred_score_thr=score_thr)
    kept = int((result.pred_instances.scores >= score_thr).sum())
    return f'{kept} detections with score >= {score_thr}'


def draw_segmentation(model, image: str, out_file: str) -> str:
    from mmseg.apis import inference_model
    model.cfg.test_pipeline = _test_pipeline(model.cfg)  # what mmseg's inference_model reads
    result = inference_model(model, image)
    _visualizer(model).add_datasample('result', mmcv.imread(image, channel_order='rgb'), data_sample=result,
                                      draw_gt=False, show=False, out_file=out_file)
    labels, counts = torch.unique(result.pred_sem_seg.data, return_counts=True)
    classes = model.dataset_meta['classes']
    total = int(counts.sum())
    shares = sorted(zip(counts.tolist(), labels.tolist()), reverse=True)
    return 'classes ' + ', '.join(f'{classes[label]} {100 * count / total:.1f}%' for count, label in shares)


def draw_classification(model, image: str, out_file: str) -> str:
    from mmengine.dataset import Compose, pseudo_collate
    from mmpretrain.visualization import UniversalVisualizer
    data = Compose(_test_pipeline(model.cfg))(dict(img_path=image))
    with torch.no_grad():
        [result] = model.test_step(pseudo_collate([data]))
    classes = model.dataset_meta.get('classes')
    UniversalVisualizer().visualize_cls(mmcv.imread(image, channel_order='rgb'), result, classes=classes,
                                        draw_gt=False, out_file=out_file)
    label = int(result.pred_label)
    name = classes[label] if classes else str(label)
    return f'class {name} (score {float(result.pred_score[label]):.3f})'


#: The image files tools/infer.py draws on in a folder, as mmdet's image_demo.py lists them.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def images_of(path: str) -> List[str]:
    """The image, or the images of a folder (by suffix, sorted); each must decode.

    Raises:
        ToolArgumentError: The path does not exist, a folder has no image, or a file is no image that decodes.
    """
    if osp.isdir(path):
        images = sorted(osp.join(path, name) for name in os.listdir(path) if name.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            raise ToolArgumentError(f'folder {path} holds no image ({", ".join(IMAGE_SUFFIXES)})')
    elif osp.isfile(path):
        images = [path]
    else:
        raise ToolArgumentError(f'image {path} does not exist')
    for image in images:
        if mmcv.imread(image) is None:
            raise ToolArgumentError(f'{image} is not an image that can be decoded: give a JPEG, PNG or other image '
                                    f'file (or a folder of them)')
    return images


def main(argv=None):
    args = parse_args(argv)
    images = images_of(args.image)
    out_files = [osp.join(args.out, osp.basename(image)) for image in images]
    check_outputs([('--out', args.out)] + [('--out', path) for path in out_files],
                  [('the image', image) for image in images] + [
                      ('the images\' folder', args.image if osp.isdir(args.image) else None),
                      ('the config', args.config), ('the checkpoint', args.checkpoint)])
    model = load_model(args.config, args.checkpoint, args.device, args.allow_partial_checkpoint)
    os.makedirs(args.out, exist_ok=True)
    scope = model.cfg.get('default_scope')
    for image, out_file in zip(images, out_files):
        if scope == 'mmseg':
            summary = draw_segmentation(model, image, out_file)
        elif scope == 'mmpretrain':
            summary = draw_classification(model, image, out_file)
        else:
            summary = draw_detections(model, image, out_file, args.score_thr)
        print(f'{summary} drawn into {out_file}')
