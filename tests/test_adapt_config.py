"""tools/adapt_config.py: the frameworks' own configs turned into their LaViT twins, each trained for one iteration
with loss_dp and run to a prediction on the generated data; heads fed the wrong strides refused."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DATASETS

from conftest import succeeded
from mmlavit import attach_dp_loss
from mmlavit.cli.adapt_config import LAVIT_MEAN, LAVIT_STD, adapt_config
from mmlavit.cli.model_checks import ConfigError
from mmlavit.cli.runner import build_model
from tool_calls import call_tool, run_tool

ALL = [64, 128, 320, 512]  # LaViT-T's channels at strides 4, 8, 16, 32
LAST3 = {'model.backbone.out_indices': (1, 2, 3), 'model.neck.in_channels': [128, 320, 512]}
FPN = {'model.backbone.out_indices': (0, 1, 2, 3), 'model.neck.in_channels': ALL}
RGB = {'model.data_preprocessor.mean': LAVIT_MEAN, 'model.data_preprocessor.std': LAVIT_STD,
       'model.data_preprocessor.bgr_to_rgb': True}

#: (source config, LaViT options, what the twin must hold): at least the frameworks' configs of the README's table.
CONFIGS = {
    'faster-rcnn': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', {}, FPN),
    'faster-rcnn-frozen-stem': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', {'frozen_stages': 1},
                                {**FPN, 'model.backbone.frozen_stages': 1}),
    'cascade-mask-rcnn': ('mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', {}, FPN),
    'retinanet': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', {}, FPN),
    'fcos-caffe': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', {}, {**FPN, **RGB}),
    'atss': ('mmdet::atss/atss_r50_fpn_1x_coco.py', {}, FPN),
    'dino': ('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', {}, LAST3),
    'deformable-detr': ('mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py', {}, LAST3),
    'yolox-s': ('mmdet::yolox/yolox_s_8xb8-300e_coco.py', {}, {**LAST3, **RGB}),
    'mask2former-instance': ('mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', {},
                             {'model.backbone.out_indices': (0, 1, 2, 3), 'model.panoptic_head.in_channels': ALL}),
    'deeplabv3plus': ('mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py', {},
                      {'model.decode_head.in_channels': 512, 'model.decode_head.c1_in_channels': 64,
                       'model.auxiliary_head.in_channels': 320, 'model.pretrained': None}),
    'semantic-fpn': ('mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', {}, {**FPN, 'model.pretrained': None}),
    'segformer-head': ('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', {},
                       {'model.decode_head.in_channels': ALL}),
    'mask2former-semantic': ('mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py', {},
                             {'model.decode_head.in_channels': ALL}),
    'segnext-ham-head': ('mmseg::segnext/segnext_mscan-t_1xb16-adamw-160k_ade20k-512x512.py', {},
                         {'model.backbone.out_indices': (0, 1, 2, 3), 'model.decode_head.in_channels': ALL[1:]}),
    'upernet': ('mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py', {},
                {'model.decode_head.in_channels': ALL, 'model.auxiliary_head.in_channels': 320,
                 'model.pretrained': None}),
    'resnet18-classifier': ('mmpretrain::resnet/resnet18_8xb32_in1k.py', {},
                            {'model.backbone.out_indices': (3, ), 'model.head.in_channels': 512}),
}


def value_at(cfg, key):
    for part in key.split('.'):
        cfg = cfg[part]
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg


def without_scopes(value):
    """A config value without the ``_scope_`` keys that mmengine adds to what a ``package::`` base defines."""
    if isinstance(value, dict):
        return {key: without_scopes(item) for key, item in value.items() if key != '_scope_'}
    return [without_scopes(item) for item in value] if isinstance(value, (list, tuple)) else value


def two_images(framework, coco_shapes, ade_shapes, imagenet_shapes):
    """The first two training images of the generated set of ``framework``, through its own loading pipeline."""
    if framework == 'mmdet':
        dataset = dict(type='mmdet.CocoDataset', data_root=coco_shapes, data_prefix=dict(img='train2017/'),
                       ann_file='annotations/instances_train2017.json',
                       metainfo=dict(classes=('circle', 'square', 'triangle')),
                       pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_mask=True),
                                 dict(type='Resize', scale=(128, 128), keep_ratio=True), dict(type='PackDetInputs')])
    elif framework == 'mmseg':
        dataset = dict(type='mmseg.ADE20KDataset', data_root=ade_shapes,
                       data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                       pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
                                 dict(type='PackSegInputs')])
    else:
        dataset = dict(type='mmpretrain.ImageNet', data_root=imagenet_shapes, split='train',
                       metainfo=dict(classes=('circle', 'square', 'triangle')),
                       pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    dataset = DATASETS.build(dataset)
    return pseudo_collate([dataset[0], dataset[1]])


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CONFIGS))
def test_framework_config_becomes_a_lavit_twin_that_trains_and_predicts(name, coco_shapes, ade_shapes,
                                                                        imagenet_shapes):
    source, options, expected = CONFIGS[name]
    cfg, changes = adapt_config(source, arch='t', backbone_options=options)
    for key, value in expected.items():
        assert value_at(cfg, key) == value, key
    assert value_at(cfg, 'model.backbone.type') == 'mmlavit.LaViT'
    assert 'mmlavit' in cfg.custom_imports.imports
    assert [hook['type'] for hook in cfg.custom_hooks][-1] == 'mmlavit.DPLossHook'
    assert changes[0].startswith('model.backbone: ') and changes[-1].startswith('custom_hooks: + mmlavit.DPLossHook')
    framework = source.split('::')[0]
    # The configs pad to their data sets' sizes (1024 for Mask2Former, 512 for ADE20K, YOLOX's 480-800 resizing):
    # cut to the 128-pixel generated images.
    preprocessor = cfg.model.get('data_preprocessor') or {}
    if preprocessor.get('batch_augments'):
        preprocessor.batch_augments = None
    if preprocessor.get('size'):
        preprocessor.size = (128, 128)
    if name == 'dino':  # its 900 queries are picked from the encoder's tokens: 340 at 128x128
        cfg.model.num_queries = 300

    model = build_model(cfg)  # its channel and stride checks pass
    model.init_weights()  # as the Runner initialises it
    batch = two_images(framework, coco_shapes, ade_shapes, imagenet_shapes)
    model.train()
    attach_dp_loss(model)
    log_vars = model.train_step(batch, build_optim_wrapper(model, cfg.optim_wrapper))
    assert all(math.isfinite(float(value)) for value in log_vars.values()), log_vars
    # One LaViT forward: loss_dp is dp_weight (0.1) times its logged L_sym + L_diag.
    loss_dp, dp_sym, dp_diag = (float(log_vars[key]) for key in ('loss_dp', 'dp_sym', 'dp_diag'))
    assert loss_dp == pytest.approx(0.1 * (dp_sym + dp_diag), abs=1e-6) and loss_dp != 0

    model.eval()
    with torch.no_grad():
        predictions = model.test_step(batch)
    assert len(predictions) == 2
    for prediction, sample in zip(predictions, batch['data_samples']):
        if framework == 'mmdet':
            boxes = prediction.pred_instances.bboxes
            assert boxes.shape[-1] == 4 and torch.isfinite(boxes).all()
            assert len(prediction.pred_instances.scores) == len(boxes)
        elif framework == 'mmseg':
            assert prediction.pred_sem_seg.data.shape[-2:] == sample.gt_sem_seg.data.shape[-2:]
            assert int(prediction.pred_sem_seg.data.max()) < cfg.model.decode_head.num_classes
        else:
            assert prediction.pred_score.shape == (1000, )
            assert float(prediction.pred_score.sum()) == pytest.approx(1.0, abs=1e-4)


def test_yolox_fed_four_levels_is_refused_naming_the_strides_and_out_indices():
    """The README's old recipe taken literally: LaViT's four outputs (strides 4-32) into YOLOX's PAFPN, whose head
    places its priors at strides 8, 16 and 32 (and takes the first three levels)."""
    cfg, _ = adapt_config('mmdet::yolox/yolox_s_8xb8-300e_coco.py', arch='t')
    cfg.merge_from_dict({'model.backbone.out_indices': (0, 1, 2, 3), 'model.neck.in_channels': ALL})
    with pytest.raises(ConfigError) as refused:
        build_model(cfg)
    assert str(refused.value) == (
        "model.bbox_head (YOLOXHead) places its priors at strides [8, 16, 32], but LaViT (out_indices (0, 1, 2, 3)) "
        "and the neck give it features at strides [4, 8, 16, 32]: its boxes would be placed at the wrong strides. "
        "Set model.backbone.out_indices=(1, 2, 3) (LaViT's stages at those strides) and the neck's in_channels to "
        "[128, 320, 512], or write the config with tools/adapt_config.py")


def test_rcnn_fed_levels_from_stride_8_is_refused():
    """Faster R-CNN's RPN anchors and RoI pooling at strides 4-64 need LaViT's first stage too."""
    cfg, _ = adapt_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', arch='t')
    cfg.merge_from_dict({'model.backbone.out_indices': (1, 2, 3), 'model.neck.in_channels': ALL[1:],
                         'model.neck.num_outs': 5})
    with pytest.raises(ConfigError, match=r'model.rpn_head \(RPNHead\) places its priors at strides '
                                          r'\[4, 8, 16, 32, 64\], but .* strides \[8, 16, 32, 64, 128\]'):
        build_model(cfg)


def test_tool_writes_a_config_that_inherits_the_source(tmp_path):
    out = tmp_path / 'yolox_s_lavit-t.py'
    output = succeeded(call_tool('tools/adapt_config.py', 'mmdet::yolox/yolox_s_8xb8-300e_coco.py', '--out', out,
                                 '--backbone-options', 'drop_path_rate=0.2'))
    text = out.read_text()
    assert "_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'" in text
    assert '# - model.neck.in_channels: [128, 256, 512] -> [128, 320, 512]' in text
    assert 'model.neck.in_channels: [128, 256, 512] -> [128, 320, 512]' in output
    written = Config.fromfile(out)
    merged, _ = adapt_config('mmdet::yolox/yolox_s_8xb8-300e_coco.py', arch='t',
                             backbone_options=dict(drop_path_rate=0.2))
    assert without_scopes(written.model.to_dict()) == without_scopes(merged.model.to_dict())
    assert [hook['type'] for hook in written.custom_hooks] == ['YOLOXModeSwitchHook', 'SyncNormHook', 'EMAHook',
                                                                'mmlavit.DPLossHook']
    # A second run does not write over the first.
    before = out.read_bytes()
    again = call_tool('tools/adapt_config.py', 'mmdet::yolox/yolox_s_8xb8-300e_coco.py', '--out', out)
    assert again.returncode == 1 and f'--out {out} exists' in again.stderr
    assert out.read_bytes() == before


@pytest.mark.slow
def test_tool_as_a_process_and_its_config_trains_with_the_training_tool(tmp_path, coco_shapes):
    out = tmp_path / 'retinanet_lavit-t.py'
    succeeded(run_tool('tools/adapt_config.py', 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '--out', out))
    output = succeeded(call_tool(
        'tools/train.py', out, '--work-dir', tmp_path / 'work', '--cfg-options', f'data_root={coco_shapes}',
        'train_dataloader.dataset.metainfo.classes=circle,square,triangle', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.2.scale=(128,128)', 'train_cfg.max_epochs=1', 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None', 'default_hooks.logger.interval=1'))
    assert 'loss_dp:' in output and 'Epoch(train) [1][2/2]' in output
