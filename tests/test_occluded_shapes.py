"""The occluded shapes set (mmlavit.cli.demo_data.occluded), the ablation config that trains on it and its
generation by tools/ablate.py."""
import functools
import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import MODELS, init_default_scope
from pycocotools.coco import COCO

from mmlavit import attach_dp_loss
from mmlavit.cli import ablation
from mmlavit.cli.datasets import DatasetNotFoundError
from mmlavit.cli.demo_data import OCCLUDED_SHAPE_CLASSES, make_coco_occluded_shapes
from mmlavit.cli.demo_data.occluded import paint_shapes, visible_annotations
from mmlavit.cli.tool_process import REPO
from test_protocol_configs import train_samples
from tool_calls import call_tool

CONFIG = 'configs/ablation/mask_rcnn_fpn_occluded_shapes.py'
SHAPES_CONFIG = 'configs/ablation/mask_rcnn_fpn_shapes.py'
NARROW_CONFIG = 'configs/ablation/mask_rcnn_fpn_occluded_shapes_narrow.py'
ABLATION_CONFIGS = sorted(str(path.relative_to(REPO)) for path in (REPO / 'configs/ablation').glob('*.py'))


def square(x0, y0, side):
    """The outline of the square of pixels x0..x0+side-1, y0..y0+side-1 (cv2.fillPoly fills the border too)."""
    x1, y1 = x0 + side - 1, y0 + side - 1
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.int32)


def test_an_instance_is_annotated_by_what_later_shapes_leave_visible():
    image = np.zeros((100, 100, 3), np.uint8)
    red, green, blue, white = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)
    shapes = [(0, square(10, 10, 50), red),  # 2500 pixels, 20x20 of them under the next square
              (1, square(40, 40, 50), green),
              (2, square(70, 5, 20), blue),  # under the next square entirely: not annotated
              (0, square(68, 3, 24), white)]
    annotations = visible_annotations(paint_shapes(image, shapes))

    assert [label for label, _ in annotations] == [0, 1, 0]
    [first, second, last] = [fields for _, fields in annotations]
    assert first['area'] == 50 * 50 - 20 * 20 and first['bbox'] == [10, 10, 50, 50]
    assert second['area'] == 50 * 50 and second['bbox'] == [40, 40, 50, 50]
    assert last['area'] == 24 * 24 and last['bbox'] == [68, 3, 24, 24]
    expected = np.zeros((100, 100), np.uint8)
    expected[10:60, 10:60] = 1
    expected[40:60, 40:60] = 0
    np.testing.assert_array_equal(mask_util.decode(first['segmentation']), expected)
    assert tuple(image[50, 50]) == green and tuple(image[20, 20]) == red and tuple(image[10, 80]) == white


def test_a_shape_inside_an_earlier_one_leaves_a_hole_in_its_mask():
    image = np.zeros((64, 64, 3), np.uint8)
    [(_, outer), _] = visible_annotations(paint_shapes(image, [(2, square(8, 8, 40), (9, 9, 9)),
                                                               (0, square(20, 20, 10), (99, 99, 99))]))
    assert outer['area'] == 40 * 40 - 10 * 10 and outer['bbox'] == [8, 8, 40, 40]
    mask = mask_util.decode(outer['segmentation'])
    assert mask[24, 24] == 0 and mask[12, 12] == 1 and mask.sum() == outer['area']


def test_a_seed_writes_the_same_files(tmp_path):
    for name, seed in (('a', 1), ('b', 1), ('c', 2)):
        make_coco_occluded_shapes(str(tmp_path / name), num_train=3, num_val=1, seed=seed)
    files = sorted(path.relative_to(tmp_path / 'a') for path in (tmp_path / 'a').rglob('*') if path.is_file())
    assert len(files) == 2 + 3 + 1
    for path in files:
        assert (tmp_path / 'a' / path).read_bytes() == (tmp_path / 'b' / path).read_bytes(), path
    train_json = 'annotations/instances_train2017.json'
    assert (tmp_path / 'a' / train_json).read_bytes() != (tmp_path / 'c' / train_json).read_bytes()


@pytest.fixture(scope='module')
def occluded_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('occluded_shapes')
    make_coco_occluded_shapes(str(root), num_train=2, num_val=1, seed=3)
    return str(root) + '/'


def test_annotations_load_in_pycocotools_as_written(occluded_root):
    coco = COCO(occluded_root + 'annotations/instances_train2017.json')
    assert [category['name'] for category in coco.loadCats(coco.getCatIds())] == list(OCCLUDED_SHAPE_CLASSES)
    annotations = coco.loadAnns(coco.getAnnIds())
    assert annotations and {image['height'] for image in coco.loadImgs(coco.getImgIds())} == {160}
    for annotation in annotations:
        mask = coco.annToMask(annotation)
        assert mask.sum() == annotation['area'] and list(cv2.boundingRect(mask)) == annotation['bbox']


@functools.lru_cache(maxsize=None)
def read_config(config):
    return Config.fromfile(REPO / config)


def test_config_train_pipeline_on_the_set(occluded_root):
    """mmdet's CocoDataset reads the set with the config's classes; the 160x160 images are kept at scale 1."""
    samples = train_samples(read_config(CONFIG), 'mmdet', occluded_root, 1)
    written = json.loads(Path(occluded_root, 'annotations/instances_train2017.json').read_text())
    assert len(samples) == 2
    for sample in samples:
        instances = sample['data_samples'].gt_instances
        image_id = sample['data_samples'].img_id
        expected = [annotation for annotation in written['annotations'] if annotation['image_id'] == image_id]
        assert sample['inputs'].shape == (3, 160, 160)
        assert instances.labels.tolist() == [annotation['category_id'] - 1 for annotation in expected]
        assert instances.masks.masks.sum((1, 2)).tolist() == [annotation['area'] for annotation in expected]


def test_config_is_the_shapes_schedule_with_mmdets_mask_rcnn(tmp_path):
    cfg, shapes = read_config(CONFIG), read_config(SHAPES_CONFIG)
    for key in ('train_cfg', 'val_cfg', 'param_scheduler', 'optim_wrapper', 'default_hooks', 'custom_hooks',
                'custom_imports', 'randomness'):
        assert cfg[key] == shapes[key], key
    assert cfg.train_cfg.max_iters == 600 and cfg.optim_wrapper.optimizer.lr == 4e-4
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.pipeline == shapes[loader].dataset.pipeline and cfg[loader].batch_size == 4
        assert dataset.data_root == 'data/occluded_shapes_ablation/'
        assert dataset.metainfo.classes == OCCLUDED_SHAPE_CLASSES
    assert cfg.val_evaluator.ann_file == 'data/occluded_shapes_ablation/annotations/instances_val2017.json'
    assert {'type': 'mmlavit.DPLossHook'} in cfg.custom_hooks

    mmdet_model = tmp_path / 'mask_rcnn.py'
    mmdet_model.write_text("_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'\n")
    expected = Config.fromfile(str(mmdet_model)).model
    expected.backbone = shapes.model.backbone
    expected.neck.in_channels = [64, 128, 320, 512]
    expected.roi_head.bbox_head.num_classes = expected.roi_head.mask_head.num_classes = 3
    assert cfg.model.to_dict() == expected.to_dict()
    assert (cfg.model.backbone.type, cfg.model.backbone.arch, cfg.model.backbone.drop_path_rate) == (
        'mmlavit.LaViT', 't', 0.1)
    assert cfg.model.neck.out_channels == cfg.model.rpn_head.in_channels == cfg.model.roi_head.mask_head.in_channels
    assert cfg.model.neck.out_channels == 256 and cfg.model.roi_head.bbox_head.fc_out_channels == 1024


def test_narrow_config_is_the_shapes_config_on_the_occluded_set():
    cfg, shapes = read_config(NARROW_CONFIG), read_config(SHAPES_CONFIG)
    assert cfg.model.to_dict() == shapes.model.to_dict() and cfg.model.neck.out_channels == 64
    for key in ('train_cfg', 'param_scheduler', 'optim_wrapper', 'custom_hooks'):
        assert cfg[key] == shapes[key], key
    for loader in ('train_dataloader', 'val_dataloader'):
        assert cfg[loader].dataset.data_root == 'data/occluded_shapes_ablation/'
        assert cfg[loader].dataset.metainfo.classes == OCCLUDED_SHAPE_CLASSES
        assert cfg[loader].dataset.pipeline == shapes[loader].dataset.pipeline
    assert read_config(CONFIG).train_dataloader.to_dict() == cfg.train_dataloader.to_dict()


def test_config_model_trains_loss_dp_on_generated_images(occluded_root):
    cfg = read_config(CONFIG)
    samples = train_samples(cfg, 'mmdet', occluded_root, 1)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    attach_dp_loss(model)
    losses = model(**model.data_preprocessor(pseudo_collate(samples), True), mode='loss')
    assert {'loss_dp', 'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(losses)
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stages[0].layers[1].attn.theta_weight.grad.abs().sum() > 0


@pytest.mark.parametrize('config', ABLATION_CONFIGS)
def test_ablate_writes_each_shipped_configs_set_when_missing(config, tmp_path):
    write = ablation.generated_set(str(REPO / config))
    assert write.keywords == dict(num_train=300, num_val=80, size=160, seed=0)
    cfg = read_config(config)
    images = ablation.prepare_data(cfg, str(tmp_path), functools.partial(write, num_train=1, num_val=2))
    assert len(images) == 2 and all(image.is_file() for image in images)
    categories = json.loads((tmp_path / cfg.val_dataloader.dataset.ann_file).read_text())['categories']
    assert tuple(category['name'] for category in categories) == cfg.val_dataloader.dataset.metainfo.classes


def test_ablate_with_a_missing_data_root_is_an_error(tmp_path):
    assert ablation.generated_set('configs/retinanet_lavit-t_fpn_1x_coco.py') is None
    with pytest.raises(DatasetNotFoundError, match='does not exist'):
        ablation.prepare_data(read_config(CONFIG), str(tmp_path / 'absent'))
    process = call_tool('tools/ablate.py', '--config', CONFIG, '--data-root', tmp_path / 'absent')
    assert process.returncode == 1 and 'training' not in process.stdout
    assert process.stderr.strip().splitlines()[-1].startswith(f'error: {tmp_path / "absent"}')
    assert not (tmp_path / 'absent').exists()
