"""The options of tools/test.py and tools/train.py that mmdet's and mmseg's tools have: --tta, --out, --show-dir
and --auto-scale-lr, on generated data against what each option computes."""
import argparse
import copy
import re

import mmengine
import numpy as np
import pytest
import torch
from mmengine.config import DictAction
from mmengine.registry import DATASETS, init_default_scope

from mmlavit.cli.datasets import iter_datasets
from mmlavit.cli.demo_data import ADE_SHAPES_CLASSES, SHAPE_CLASSES, make_coco_shapes, make_imagenet_shapes
from mmlavit.cli.model_checks import ConfigError
from mmlavit.cli.runner import build_model, load_config
from mmlavit.cli.testing import apply_tta
from tool_calls import call_tool

pytestmark = pytest.mark.slow

SEG_CONFIG = 'configs/demo/upernet_lavit_t_shapes_ade.py'
# The shipped RetinaNet and its test-time augmentation, on the generated 128x128 shapes: three classes, and
# the scales (1333x800, 666x400, 2000x1200) cut to 128, 96 and 160 to keep it quick on CPU.
DET_CONFIG = 'configs/retinanet_lavit-t_fpn_1x_coco.py'
DET_OPTIONS = ['model.bbox_head.num_classes=3', f'test_dataloader.dataset.metainfo.classes=({",".join(SHAPE_CLASSES)})',
               'test_dataloader.dataset.pipeline.1.scale=(128,128)', 'tta_pipeline.1.transforms.0.0.scale=(128,128)',
               'tta_pipeline.1.transforms.0.1.scale=(96,96)', 'tta_pipeline.1.transforms.0.2.scale=(160,160)',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
# The shipped Mask R-CNN and its test-time augmentation (the RetinaNet's scales and flips), on the same shapes and
# scales, with the proposals and detections per image cut to 100 and 10 to keep the mask head quick on CPU.
MASK_CONFIG = 'configs/mask-rcnn_lavit-t_fpn_1x_coco.py'
MASK_OPTIONS = ['model.roi_head.bbox_head.num_classes=3', 'model.roi_head.mask_head.num_classes=3',
                'model.test_cfg.rpn.max_per_img=100', 'model.test_cfg.rcnn.max_per_img=10', *DET_OPTIONS[1:]]
CLS_CONFIG = 'configs/demo/lavit_t_shapes_imagenet.py'


def parse_options(options):
    """--cfg-options as the tools parse them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


def save_untrained_checkpoint(config, options, path, classes):
    """The config's model as built (its weights at their initial values) in a checkpoint that names the classes."""
    torch.manual_seed(0)
    model = build_model(config, cfg_options=parse_options(options))
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': classes}}}, path)
    return path


def run_test_tool(config, checkpoint, options, work_dir, *extra):
    """tools/test.py, which must succeed; its stdout."""
    process = call_tool('tools/test.py', config, checkpoint, '--work-dir', work_dir, *extra, '--cfg-options', *options)
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


def plain_and_tta_tests(config, checkpoint, options, root):
    """tools/test.py plainly (--out root/plain.pkl, --show-dir root/drawn) and with --tta (--out root/tta.pkl).

    Returns:
        dict: root, options, checkpoint, and the two runs' output as plain_log and tta_log.
    """
    runs = dict(root=root, options=options, checkpoint=checkpoint)
    runs['plain_log'] = run_test_tool(config, checkpoint, options, root / 'work', '--out', root / 'plain.pkl',
                                      '--show-dir', root / 'drawn')
    runs['tta_log'] = run_test_tool(config, checkpoint, options, root / 'work', '--tta', '--out', root / 'tta.pkl')
    return runs


# Segmentation: UperNet on the ADE20K-layout set, mmseg's TTA (6 scales x flip).

@pytest.fixture(scope='module')
def seg(tmp_path_factory, ade_shapes):
    """The plain test (--out, --show-dir) and the --tta test (--out) of an untrained UperNet on the 3 validation
    images of the session's ADE20K-layout set: paths and logs."""
    root = tmp_path_factory.mktemp('seg')
    options = [f'data_root={ade_shapes}']
    checkpoint = save_untrained_checkpoint(SEG_CONFIG, options, root / 'upernet.pth', ADE_SHAPES_CLASSES)
    return plain_and_tta_tests(SEG_CONFIG, checkpoint, options, root)


def iou_metrics(log):
    found = re.search(r'Iter\(test\) \[3/3\]\s+aAcc: ([\d.]+)\s+mIoU: ([\d.]+)\s+mAcc: ([\d.]+)', log)
    assert found, log[-2000:]
    return tuple(map(float, found.groups()))


def test_seg_tta_is_the_mean_softmax_over_scales_and_flips(seg):
    """--tta's class map is the argmax of the softmax averaged over the 12 views of mmseg's tta_pipeline."""
    cfg = load_config(SEG_CONFIG, parse_options(seg['options']))
    model = build_model(SEG_CONFIG, str(seg['checkpoint']), parse_options(seg['options']))
    init_default_scope('mmseg')
    dataset_cfg = next(iter_datasets(cfg, ['test_dataloader']))
    plain_set = DATASETS.build(copy.deepcopy(dataset_cfg))
    views_set = DATASETS.build(dict(copy.deepcopy(dataset_cfg), pipeline=cfg.tta_pipeline))
    plain, tta = mmengine.load(seg['root'] / 'plain.pkl'), mmengine.load(seg['root'] / 'tta.pkl')
    assert len(plain) == len(tta) == len(views_set) == 3
    changed = 0
    for index, views in enumerate(views_set):
        assert len(views['inputs']) == 12
        probabilities = 0
        with torch.no_grad():
            for view, sample in zip(views['inputs'], views['data_samples']):
                [result] = model.test_step(dict(inputs=[view], data_samples=[sample]))
                probabilities = probabilities + result.seg_logits.data.softmax(dim=0)
            [expected_plain] = model.test_step({key: [value] for key, value in plain_set[index].items()})
        expected = (probabilities / 12).argmax(dim=0, keepdim=True)
        assert tta[index]['img_path'] == plain[index]['img_path'] == views['data_samples'][0].img_path
        assert torch.equal(tta[index]['pred_sem_seg']['data'].long(), expected)
        assert torch.equal(plain[index]['pred_sem_seg']['data'].long(), expected_plain.pred_sem_seg.data)
        changed += int((expected != expected_plain.pred_sem_seg.data).sum())
    assert changed > 0  # the augmented views change the prediction
    assert iou_metrics(seg['tta_log']) != iou_metrics(seg['plain_log'])


def test_seg_out_has_one_class_map_per_image_without_logits(seg):
    predictions = mmengine.load(seg['root'] / 'tta.pkl')
    assert [prediction['pred_sem_seg']['data'].shape for prediction in predictions] == [(1, 120, 120)] * 3
    assert all('seg_logits' not in prediction and 'gt_sem_seg' not in prediction for prediction in predictions)
    assert all(prediction['pred_sem_seg']['data'].dtype == torch.uint8 for prediction in predictions)


def test_seg_show_dir_draws_every_test_image(seg):
    drawn = sorted(path.name for path in (seg['root'] / 'drawn' / 'vis_data' / 'vis_image').iterdir())
    assert drawn == [f'test_ADE_val_{index:08d}.jpg_0.png' for index in (1, 2, 3)]
    assert f'Predictions drawn into {seg["root"] / "drawn" / "vis_data" / "vis_image"}' in seg['plain_log']


# Detection: RetinaNet on the COCO shapes, mmdet's DetTTAModel (3 scales x flip, NMS).

def coco_shapes_tests(root, config, options):
    """:func:`plain_and_tta_tests` of an untrained detector on 3 generated COCO shapes images under root."""
    make_coco_shapes(str(root / 'coco'), num_train=1, num_val=3, seed=3)
    options = [f'data_root={root / "coco"}/', *options]
    checkpoint = save_untrained_checkpoint(config, options, root / 'detector.pth', SHAPE_CLASSES)
    return plain_and_tta_tests(config, checkpoint, options, root)


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    return coco_shapes_tests(tmp_path_factory.mktemp('det'), DET_CONFIG, DET_OPTIONS)


def test_det_tta_keeps_boxes_of_every_view(det):
    """DetTTAModel: the views' boxes, flipped back, merged by NMS; so each kept box is one view's box, and some
    come from views other than the plain one."""
    from mmdet.structures.bbox import bbox_flip
    options = parse_options(det['options'])
    cfg = load_config(DET_CONFIG, options)
    model = build_model(DET_CONFIG, str(det['checkpoint']), options)
    init_default_scope('mmdet')
    views_set = DATASETS.build(dict(copy.deepcopy(next(iter_datasets(cfg, ['test_dataloader']))),
                                    pipeline=cfg.tta_pipeline))
    plain, tta = mmengine.load(det['root'] / 'plain.pkl'), mmengine.load(det['root'] / 'tta.pkl')
    assert len(plain) == len(tta) == len(views_set) == 3
    for index, views in enumerate(views_set):
        boxes = []
        with torch.no_grad():
            for view, sample in zip(views['inputs'], views['data_samples']):
                [result] = model.test_step(dict(inputs=[view], data_samples=[sample]))
                view_boxes = result.pred_instances.bboxes
                boxes.append(bbox_flip(view_boxes, sample.ori_shape, 'horizontal') if sample.flip else view_boxes)
        merged = tta[index]['pred_instances']['bboxes']
        assert 0 < len(merged) <= 100
        distance = (merged[:, None] - torch.cat(boxes)[None]).abs().amax(-1)
        assert (distance.amin(1) < 1e-3).all(), 'a TTA box that no view predicted'
        plain_boxes = plain[index]['pred_instances']['bboxes']
        from_plain = (merged[:, None] - plain_boxes[None]).abs().amax(-1).amin(1) < 1e-3
        assert not from_plain.all(), 'every TTA box is a box of the plain test'
    for log in (det['plain_log'], det['tta_log']):
        assert re.search(r'coco/bbox_mAP: [\d.]+', log), log[-2000:]


def test_det_out_and_show_dir_one_per_image(det):
    predictions = mmengine.load(det['root'] / 'plain.pkl')
    assert [prediction['img_id'] for prediction in predictions] == [1, 2, 3]
    assert all({'bboxes', 'scores', 'labels'} <= set(prediction['pred_instances']) for prediction in predictions)
    assert sorted(path.name for path in (det['root'] / 'drawn').iterdir()) == ['000001.jpg', '000002.jpg',
                                                                                  '000003.jpg']


# Instance segmentation: Mask R-CNN on the COCO shapes, mmlavit's InstanceSegTTAModel (DetTTAModel's boxes, and
# the mask of each kept box).

#: Each flip direction's reversal of the axes of (n, H, W) masks.
HAND_FLIPS = {'horizontal': np.s_[..., ::-1], 'vertical': np.s_[..., ::-1, :], 'diagonal': np.s_[..., ::-1, ::-1]}


def hand_built_views(direction):
    """Two views' predictions of one 6x8 image, the second flipped in ``direction``, and the masks that each
    view's boxes have in the image (5, 6, 8): the first view's two boxes, then the second view's three."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import bbox_flip
    from mmengine.structures import InstanceData
    shape = (6, 8)
    image_boxes = torch.tensor([[0., 0., 4., 3.], [5., 2., 8., 6.],  # first view: A (0.9), B (0.3)
                                [0., 0., 4., 2.5], [0., 3., 3., 6.], [5., 0., 8., 2.]])  # second: C, D, E
    image_masks = torch.rand((5, *shape), generator=torch.Generator().manual_seed(0)) > 0.5
    view_boxes = [image_boxes[:2], bbox_flip(image_boxes[2:], shape, direction)]
    view_masks = [image_masks[:2], torch.from_numpy(image_masks[2:].numpy()[HAND_FLIPS[direction]].copy())]
    views = []
    for flip, boxes, masks, scores, labels in zip((False, True), view_boxes, view_masks,
                                                  ([0.9, 0.3], [0.8, 0.7, 0.2]), ([0, 1], [0, 1, 0])):
        instances = InstanceData(bboxes=boxes, scores=torch.tensor(scores), labels=torch.tensor(labels),
                                 masks=masks)
        views.append(DetDataSample(pred_instances=instances, metainfo=dict(
            ori_shape=shape, flip=flip, flip_direction=direction if flip else None)))
    return views, image_boxes, image_masks


class UnusedDetector(torch.nn.Module):
    """The module a TTA model must wrap, for calls of its merge alone."""

    def test_step(self, data):
        raise AssertionError('the merge runs no model')


@pytest.mark.parametrize('direction', HAND_FLIPS)
def test_instance_tta_keeps_the_mask_of_each_kept_box(direction):
    """NMS at IoU 0.5 drops C (IoU 0.83 with A, same class), E is cut by max_per_img=3: A, D and B are kept, D's
    mask flipped back from the second view; the boxes and scores are DetTTAModel's."""
    from mmdet.models.test_time_augs import DetTTAModel

    from mmlavit.instance_tta import InstanceSegTTAModel
    tta_cfg = mmengine.ConfigDict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=3)
    views, image_boxes, image_masks = hand_built_views(direction)
    merged = InstanceSegTTAModel(module=UnusedDetector(), tta_cfg=tta_cfg).merge_preds(
        [copy.deepcopy(views)])[0].pred_instances
    assert torch.equal(merged.masks, image_masks[[0, 3, 1]])
    assert torch.equal(merged.labels, torch.tensor([0, 1, 1]))
    assert torch.allclose(merged.bboxes, image_boxes[[0, 3, 1]])
    for view in views:
        del view.pred_instances.masks
    boxes_only = DetTTAModel(module=UnusedDetector(), tta_cfg=tta_cfg).merge_preds(
        [copy.deepcopy(views)])[0].pred_instances
    assert torch.equal(merged.bboxes, boxes_only.bboxes) and torch.equal(merged.scores, boxes_only.scores)
    assert torch.equal(merged.scores, torch.tensor([0.9, 0.7, 0.3]))
    # Without masks it merges as DetTTAModel does.
    without_masks = InstanceSegTTAModel(module=UnusedDetector(), tta_cfg=tta_cfg).merge_preds([views])
    assert without_masks[0].pred_instances.to_dict().keys() == boxes_only.to_dict().keys()
    assert torch.equal(without_masks[0].pred_instances.bboxes, boxes_only.bboxes)


@pytest.fixture(scope='module')
def mask(tmp_path_factory):
    return coco_shapes_tests(tmp_path_factory.mktemp('mask'), MASK_CONFIG, MASK_OPTIONS)


def test_mask_rcnn_tta_predicts_a_mask_per_kept_box(mask):
    """tools/test.py --tta of the shipped Mask R-CNN: bbox and segm metrics, per image the merged boxes, each
    with a mask at the image's size that lies in its box (a mask left flipped would lie in the mirrored box),
    and boxes the plain test does not have."""
    from pycocotools import mask as coco_mask
    plain, tta = mmengine.load(mask['root'] / 'plain.pkl'), mmengine.load(mask['root'] / 'tta.pkl')
    assert [prediction['img_id'] for prediction in tta] == [prediction['img_id'] for prediction in plain] == [1, 2, 3]
    for prediction, plain_prediction in zip(tta, plain):
        boxes, masks = prediction['pred_instances']['bboxes'], prediction['pred_instances']['masks']
        assert 0 < len(boxes) == len(masks) <= 100
        decoded = torch.from_numpy(coco_mask.decode(masks)).permute(2, 0, 1).bool()
        assert decoded.shape[1:] == (128, 128) and decoded.any()
        rows, columns = torch.arange(128)[:, None] + 0.5, torch.arange(128)[None] + 0.5
        for box, instance_mask in zip(boxes, decoded):
            x1, y1, x2, y2 = box.tolist()
            in_box = (columns > x1 - 1) & (columns < x2 + 1) & (rows > y1 - 1) & (rows < y2 + 1)
            assert not (instance_mask & ~in_box).any(), 'a mask outside its box'
        plain_boxes = plain_prediction['pred_instances']['bboxes']
        from_plain = (boxes[:, None] - plain_boxes[None]).abs().amax(-1).amin(1) < 1e-3
        assert not from_plain.all(), 'every TTA box is a box of the plain test'
    for log in (mask['plain_log'], mask['tta_log']):
        assert re.search(r'coco/bbox_mAP: [\d.]+', log) and re.search(r'coco/segm_mAP: [\d.]+', log), log[-2000:]


def test_tta_needs_the_configs_augmentation(tmp_path):
    """The demo Mask R-CNN has none (its images are 128x128): --tta stops before the checkpoint is read."""
    checkpoint = tmp_path / 'epoch_1.pth'
    checkpoint.write_bytes(b'')
    process = call_tool('tools/test.py', 'configs/demo/mask_rcnn_lavit_t_shapes.py', checkpoint, '--tta',
                        '--work-dir', tmp_path / 'work')
    assert process.returncode == 1, process.stderr[-2000:]
    assert process.stderr.strip().splitlines()[-1] == (
        "error: --tta tests with the config's tta_model and tta_pipeline, and configs/demo/mask_rcnn_lavit_t_shapes.py "
        "has no tta_model and no tta_pipeline. Test without --tta, or add them to the config (as "
        "configs/mask-rcnn_lavit-s_fpn_1x_coco.py has them for Mask R-CNN)")
    assert not (tmp_path / 'work').exists()


def test_tta_refuses_box_merging_for_a_mask_detector():
    """DetTTAModel asserts that no view predicts masks: a Mask R-CNN config with it is refused before a run."""
    cfg = load_config(MASK_CONFIG, parse_options(['tta_model.type=DetTTAModel']))
    with pytest.raises(ConfigError) as refused:
        apply_tta(cfg, MASK_CONFIG)
    assert str(refused.value) == (
        f"--tta: {MASK_CONFIG} pairs DetTTAModel, which merges boxes only, with a detector that predicts instance "
        "masks; use type='mmlavit.InstanceSegTTAModel' (custom_imports 'mmlavit.instance_tta', as "
        "configs/mask-rcnn_lavit-s_fpn_1x_coco.py does)")


# Classification: the ImageNet-layout shapes, mmengine's DumpResults and mmpretrain's visualization hook.

def test_classifier_out_and_show_dir(tmp_path):
    data_root = make_imagenet_shapes(str(tmp_path / 'imagenet'), num_train=1, num_val=1, seed=3)
    options = [f'data_root={data_root}']
    checkpoint = save_untrained_checkpoint(CLS_CONFIG, options, tmp_path / 'classifier.pth', SHAPE_CLASSES)
    log = run_test_tool(CLS_CONFIG, checkpoint, options, tmp_path / 'work', '--out', tmp_path / 'predictions.pkl',
                    '--show-dir', tmp_path / 'drawn')
    assert re.search(r'accuracy/top1: [\d.]+', log)
    predictions = mmengine.load(tmp_path / 'predictions.pkl')
    names = sorted(prediction['img_path'].split('/')[-1] for prediction in predictions)
    assert names == [f'val_{name}_00001.JPEG' for name in sorted(SHAPE_CLASSES)]
    assert all(prediction['pred_score'].shape == (3, ) for prediction in predictions)
    assert sorted(path.name for path in (tmp_path / 'drawn').iterdir()) == [f'{name}_0.png' for name in names]


# --auto-scale-lr: mmdet's linear rule, lr x total batch / auto_scale_lr.base_batch_size.

def test_auto_scale_lr_scales_by_the_total_batch(tmp_path, ade_shapes):
    process = call_tool('tools/train.py', SEG_CONFIG, '--auto-scale-lr', '--work-dir', tmp_path / 'work',
                        '--cfg-options', f'data_root={ade_shapes}', 'train_dataloader.batch_size=2',
                        'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1', 'val_cfg=None',
                        'val_dataloader=None', 'val_evaluator=None')
    assert process.returncode == 0, process.stderr[-3000:]
    # The demo's lr 1e-3 is set for one process with 8 images; 1 process x 2 images: 1e-3 x 2 / 8.
    assert 'Scaling the original LR by 0.25' in process.stdout + process.stderr
    checkpoint = torch.load(tmp_path / 'work' / 'iter_1.pth', map_location='cpu', weights_only=False)
    initial_lrs = [group['initial_lr'] for group in checkpoint['optimizer']['param_groups']]
    assert initial_lrs and all(lr == pytest.approx(2.5e-4) for lr in initial_lrs)
