"""The paper's protocols as shipped configs: their settings against the recipes they follow, their models in
loss and predict, their multi-scale train pipelines and test-time augmentation on generated images."""
import ast
import copy
import functools

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DATASETS, MODELS, init_default_scope

from mmlavit import LaViT, attach_dp_loss
from mmlavit.cli.demo_data import SHAPE_CLASSES, make_ade_shapes, make_coco_shapes
from mmlavit.cli.tool_process import REPO
from test_detection import loss_step
from test_segmentation import demo_inputs

# Each recipe's config per arch; '{}' is the arch.
RECIPES = {
    'retinanet-1x': 'retinanet_lavit-{}_fpn_1x_coco.py',
    'retinanet-ms-3x': 'retinanet_lavit-{}_fpn_ms-3x_coco.py',
    'mask-rcnn-1x': 'mask-rcnn_lavit-{}_fpn_1x_coco.py',
    'mask-rcnn-ms-crop-3x': 'mask-rcnn_lavit-{}_fpn_ms-crop-3x_coco.py',
    'upernet-160k': 'upernet_lavit-{}_8xb2-160k_ade20k-512x512.py',
    'fpn-80k': 'fpn_lavit-{}_8xb4-80k_ade20k-512x512.py',
    'imagenet': 'lavit-{}_16xb64_in1k.py',
}
NEW_RECIPES = ['retinanet-ms-3x', 'mask-rcnn-ms-crop-3x', 'fpn-80k']
DETECTION = [name for name in RECIPES if name.startswith(('retinanet', 'mask-rcnn'))]
SEGMENTATION = ['upernet-160k', 'fpn-80k']
@functools.lru_cache(maxsize=None)
def _read(config):
    return Config.fromfile(REPO / 'configs' / config)


def load(config, **backbone_overrides):
    """A shipped config (read once per test session), with ``model.backbone`` overrides."""
    cfg = copy.deepcopy(_read(config))
    cfg.model.backbone.update(backbone_overrides)
    return cfg


def as_dict(cfg):
    return cfg._cfg_dict.to_dict()


@pytest.mark.parametrize('recipe', RECIPES)
def test_variants_differ_from_s_in_the_backbone_arch_only(recipe):
    small = as_dict(load(RECIPES[recipe].format('s')))
    for arch, drop_path_rate in (('t', 0.1), ('b', 0.3)):
        expected = copy.deepcopy(small)
        expected['model']['backbone'].update(arch=arch, drop_path_rate=drop_path_rate)
        assert as_dict(load(RECIPES[recipe].format(arch))) == expected, arch


def test_the_short_name_is_the_mask_rcnn_s_1x_config():
    """configs/mask_rcnn_lavit_s_coco.py, the name the README trains and tests with, is the 1x Mask R-CNN."""
    statements = ast.parse((REPO / 'configs' / 'mask_rcnn_lavit_s_coco.py').read_text()).body
    assert [ast.unparse(statement) for statement in statements] == ["_base_ = './mask-rcnn_lavit-s_fpn_1x_coco.py'"]
    assert as_dict(load('mask_rcnn_lavit_s_coco.py')) == as_dict(load('mask-rcnn_lavit-s_fpn_1x_coco.py'))


def schedule(cfg):
    """(epochs or iterations, the multi-step milestones or the poly power, the end of the linear warm-up)."""
    loop = cfg.train_cfg
    length = loop.get('max_epochs', loop.get('max_iters'))
    [main] = [step for step in cfg.param_scheduler if step.type in ('MultiStepLR', 'PolyLR', 'CosineAnnealingLR')]
    warmup = [step.end for step in cfg.param_scheduler if step.type == 'LinearLR']
    return length, main.get('milestones', main.get('power')), warmup[0] if warmup else 0


# Per recipe, what its source states: optimizer, lr, weight decay, images per GPU, the total batch the lr is for,
# the schedule (epochs or iterations, milestones or poly power, end of the warm-up: iterations, ImageNet's
# epochs), and how often the data is repeated per epoch.
PROTOCOLS = {
    'retinanet-1x': ('AdamW', 1e-4, 0.05, 2, 16, (12, [8, 11], 500), 1),
    'retinanet-ms-3x': ('AdamW', 1e-4, 0.05, 2, 16, (12, [9, 11], 500), 3),
    'mask-rcnn-1x': ('AdamW', 1e-4, 0.05, 2, 16, (12, [8, 11], 1000), 1),
    'mask-rcnn-ms-crop-3x': ('AdamW', 1e-4, 0.05, 2, 16, (36, [27, 33], 1000), 1),
    'upernet-160k': ('AdamW', 6e-5, 0.01, 2, 16, (160000, 1.0, 1500), 1),
    'fpn-80k': ('AdamW', 1e-4, 1e-4, 4, 32, (80000, 0.9, 0), 1),
    'imagenet': ('AdamW', 1e-3, 0.05, 64, 1024, (300, None, 20), 1),
}


@pytest.mark.parametrize('recipe', RECIPES)
def test_protocol_settings(recipe):
    cfg = load(RECIPES[recipe].format('s'))
    optimizer, lr, weight_decay, batch, base_batch, expected_schedule, repeats = PROTOCOLS[recipe]
    assert (cfg.optim_wrapper.optimizer.type, cfg.optim_wrapper.optimizer.lr,
            cfg.optim_wrapper.optimizer.weight_decay) == (optimizer, lr, weight_decay)
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=base_batch)
    assert schedule(cfg) == expected_schedule
    assert cfg.train_dataloader.dataset.get('times', 1) == repeats
    assert set(LaViT.arch_zoo) >= {cfg.model.backbone.arch} and cfg.model.backbone.type == 'mmlavit.LaViT'
    # LaViT's norms, LA transforms and residual LayerScale get no weight decay in every recipe.
    assert {'norm', 'theta', 'psi_weight', 'gamma'} <= set(cfg.optim_wrapper.paramwise_cfg.custom_keys)


def test_semantic_fpn_is_mmseg_fpn_on_lavit():
    cfg = load(RECIPES['fpn-80k'].format('s'))
    assert (cfg.model.type, cfg.model.neck.type, cfg.model.decode_head.type) == ('EncoderDecoder', 'FPN', 'FPNHead')
    assert cfg.model.neck.in_channels == [64, 128, 320, 512] and cfg.model.decode_head.num_classes == 150
    assert [s.type for s in cfg.param_scheduler] == ['PolyLR'] and cfg.param_scheduler[0].eta_min == 0


@pytest.mark.parametrize('recipe', DETECTION + SEGMENTATION)
def test_test_time_augmentation(recipe):
    cfg = load(RECIPES[recipe].format('s'))
    [load_image, augment] = cfg.tta_pipeline
    assert load_image.type == 'LoadImageFromFile' and augment.type == 'TestTimeAug'
    resizes, flips = augment.transforms[:2]
    assert [flip.prob for flip in flips] in ([1., 0.], [0., 1.])
    if recipe in SEGMENTATION:
        assert cfg.tta_model.type == 'SegTTAModel'
        assert [resize.scale_factor for resize in resizes] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    else:
        # Mask R-CNN: DetTTAModel's box merge, each kept box with the mask of the view that predicted it.
        tta_type = 'mmlavit.InstanceSegTTAModel' if recipe.startswith('mask-rcnn') else 'DetTTAModel'
        assert (cfg.tta_model.type, cfg.tta_model.tta_cfg) == (
            tta_type, dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        assert [resize.scale for resize in resizes] == [(1333, 800), (666, 400), (2000, 1200)]
        if recipe.startswith('mask-rcnn'):
            assert 'mmlavit.instance_tta' in cfg.custom_imports.imports
            assert augment.transforms[2] == [dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]


@pytest.mark.slow
@pytest.mark.parametrize('recipe', [recipe for recipe in NEW_RECIPES if recipe in DETECTION])
def test_new_detection_configs_loss_and_predict(recipe):
    cfg = load(RECIPES[recipe].format('s'), arch='t')
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    attach_dp_loss(model)
    with_mask = 'mask_head' in cfg.model.get('roi_head', {})
    packed, losses, total, _ = loss_step(model, with_mask)
    assert 'loss_dp' in losses and torch.isfinite(total)
    total.backward()
    assert model.backbone.stages[0].layers[1].attn.theta_weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        predictions = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(predictions) == 2 and with_mask == ('masks' in predictions[0].pred_instances)


@pytest.mark.slow
def test_semantic_fpn_loss_and_predict():
    cfg = load(RECIPES['fpn-80k'].format('s'), arch='t')
    cfg.model.data_preprocessor.size = (128, 160)  # training batches are padded to this (512x512 in the config)
    init_default_scope('mmseg')
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).train()
    attach_dp_loss(model)
    data = model.data_preprocessor(demo_inputs([(128, 128), (96, 160)], num_classes=150), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg', 'loss_dp', 'dp_sym', 'dp_diag'}
    total, _ = model.parse_losses(losses)
    total.backward()
    assert model.backbone.stages[0].layers[1].attn.theta_weight.grad.abs().sum() > 0
    model.eval()
    data = model.data_preprocessor(demo_inputs([(97, 130)], num_classes=150), False)
    with torch.no_grad():
        [result] = model(**data, mode='predict')
    assert result.pred_sem_seg.shape == (97, 130) and result.seg_logits.data.shape == (150, 97, 130)


@pytest.fixture(scope='module')
def coco_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_shapes')
    make_coco_shapes(str(root), num_train=3, num_val=1, seed=2)
    return str(root) + '/'


@pytest.fixture(scope='module')
def ade_shapes(tmp_path_factory):
    return make_ade_shapes(str(tmp_path_factory.mktemp('ade') / 'ADEChallengeData2016'), num_train=2, num_val=1,
                           seed=2)


def leaf(dataset_cfg):
    while 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return copy.deepcopy(dataset_cfg)


def train_samples(cfg, scope, data_root, draws, **dataset_overrides):
    """``draws`` passes of the config's train pipeline over its train dataset, rooted at the generated set."""
    init_default_scope(scope)
    dataset = DATASETS.build(dict(leaf(cfg.train_dataloader.dataset), data_root=data_root, **dataset_overrides))
    return [dataset[index] for _ in range(draws) for index in range(len(dataset))]


@pytest.mark.slow
def test_retinanet_ms_3x_resizes_shorter_side_640_to_800(coco_shapes):
    """common/ms_3x_coco.py: RandomResize between (1333, 640) and (1333, 800), keeping the ratio."""
    cfg = load(RECIPES['retinanet-ms-3x'].format('s'))
    samples = train_samples(cfg, 'mmdet', coco_shapes, 4, metainfo=dict(classes=SHAPE_CLASSES))
    sides = []
    for sample in samples:
        height, width = sample['inputs'].shape[1:]
        # A 128x128 image: the scale factor is shorter side / 128, so the output is square.
        assert height == width and 640 <= height <= 800
        assert sample['data_samples'].gt_instances.bboxes.shape[0] > 0
        sides.append(height)
    assert len(set(sides)) > 1


@pytest.mark.slow
def test_mask_rcnn_ms_crop_3x_resizes_to_swin_scales(coco_shapes):
    """Swin's recipe: shorter side one of 480, 512, ..., 800 (longer <= 1333), half the time after a random crop."""
    cfg = load(RECIPES['mask-rcnn-ms-crop-3x'].format('s'))
    samples = train_samples(cfg, 'mmdet', coco_shapes, 6, metainfo=dict(classes=SHAPE_CLASSES))
    shapes = set()
    for sample in samples:
        height, width = sample['inputs'].shape[1:]
        assert min(height, width) in range(480, 801, 32) and max(height, width) <= 1333
        assert sample['data_samples'].gt_instances.masks.masks.shape[1:] == (height, width)
        shapes.add((height, width))
    assert any(height != width for height, width in shapes), 'no crop in 18 draws'


@pytest.mark.slow
@pytest.mark.parametrize('recipe', SEGMENTATION)
def test_ade20k_train_pipeline_resizes_then_crops_512(recipe, ade_shapes):
    """mmseg's ade20k.py: RandomResize of (2048, 512) by 0.5-2.0 keeping the ratio, then a 512x512 crop."""
    cfg = load(RECIPES[recipe].format('s'))
    samples = train_samples(cfg, 'mmseg', ade_shapes, 6)
    sides = set()
    for sample in samples:
        height, width = sample['inputs'].shape[1:]
        # A 120x120 image resized to 512 r (r in 0.5..2) on each side, then cropped to at most 512.
        assert height == width and 256 <= height <= 512
        assert sample['data_samples'].gt_sem_seg.shape == (height, width)
        sides.add(height)
    assert len(sides) > 1


@pytest.mark.slow
@pytest.mark.parametrize('recipe', ['retinanet-1x', 'upernet-160k'])
def test_tta_pipeline_makes_every_view(recipe, coco_shapes, ade_shapes):
    """Every scale with and without the horizontal flip, on a generated validation image."""
    cfg = load(RECIPES[recipe].format('s'))
    scope, data_root, size = ('mmseg', ade_shapes, 120) if recipe in SEGMENTATION else ('mmdet', coco_shapes, 128)
    init_default_scope(scope)
    dataset = dict(leaf(cfg.test_dataloader.dataset), data_root=data_root, pipeline=cfg.tta_pipeline)
    if scope == 'mmdet':
        dataset['metainfo'] = dict(classes=SHAPE_CLASSES)
    views = DATASETS.build(dataset)[0]
    if scope == 'mmseg':
        # Resize by scale_factor r: int(120 r + 0.5) per side.
        sides = [int(size * ratio + 0.5) for ratio in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    else:
        # keep_ratio on a square image: the shorter side of each scale.
        sides = [800, 400, 1200]
    assert [tuple(view.shape[1:]) for view in views['inputs']] == [(side, side) for side in sides for _ in range(2)]
    flips = [sample.flip for sample in views['data_samples']]
    assert flips[0::2] != flips[1::2] and sorted(flips) == [False] * len(sides) + [True] * len(sides)
    first, second = views['inputs'][:2]
    assert torch.equal(first, second.flip(-1))
