"""Semi-supervised detection: mmdet's SoftTeacher with LaViT-T in the student and the teacher.

SoftTeacher's loss runs the student's backbone twice with gradients (the labeled batch, then the
strongly augmented unlabeled batch) and the teacher's under ``torch.no_grad()`` (pseudo labels from
the weakly augmented batch). ``loss_dp`` must be the sum of the student's two DP terms, with nothing
from the teacher. Two iterations with mmengine's Runner on mmdet's semi-supervised data set-up
(MultiBranch pipelines, GroupMultiSourceSampler) over a generated shapes set.
"""
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmlavit.cli.demo_data import SHAPE_CLASSES, make_coco_shapes
from mmlavit.models.attention import LessAttention
from mmlavit.models.diagonality import holds_cells, layer_dp_terms

SOFT_TEACHER_CONFIG = '''
_base_ = 'mmdet::soft_teacher/soft-teacher_faster-rcnn_r50-caffe_fpn_180k_semi-0.1-coco.py'
custom_imports = dict(imports=['mmlavit'], allow_failed_imports=False)
data_preprocessor = dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32)
model = dict(
    detector=dict(
        data_preprocessor=data_preprocessor,
        backbone=dict(_delete_=True, type='mmlavit.LaViT', arch='t'),
        neck=dict(in_channels=[64, 128, 320, 512])),
    data_preprocessor=dict(data_preprocessor=data_preprocessor))
custom_hooks = [dict(type='mmlavit.DPLossHook'), dict(type='MeanTeacherHook')]
'''

FPN_CHANNELS = 32
# mmdet's RandomResize scales are (1333, 400) to (1333, 1200): the 64 px shapes come out at 64 to 96 px.
IMAGE_SCALES = [(96, 64), (96, 96)]

pytestmark = pytest.mark.slow


def shrink_pipeline(node):
    """Sets every RandomResize in a pipeline, the nested ones (MultiBranch, RandomOrder) included, to IMAGE_SCALES."""
    if isinstance(node, dict):
        if node.get('type') == 'RandomResize':
            node['scale'] = IMAGE_SCALES
        else:
            for value in node.values():
                shrink_pipeline(value)
    elif isinstance(node, list):
        for item in node:
            shrink_pipeline(item)


def tiny_soft_teacher_config(config_file, data_root, work_dir):
    """The LaViT-T SoftTeacher config, cut to a few 64-96 px images, few proposals and two iterations."""
    cfg = Config.fromfile(str(config_file))
    detector = cfg.model.detector
    detector.backbone.drop_path_rate = 0.
    detector.neck.out_channels = FPN_CHANNELS
    detector.rpn_head.update(in_channels=FPN_CHANNELS, feat_channels=FPN_CHANNELS)
    detector.roi_head.bbox_roi_extractor.out_channels = FPN_CHANNELS
    detector.roi_head.bbox_head.update(in_channels=FPN_CHANNELS, fc_out_channels=64,
                                       num_classes=len(SHAPE_CLASSES))
    detector.train_cfg.rpn.sampler.num = 32
    detector.train_cfg.rpn_proposal.update(nms_pre=100, max_per_img=50)
    detector.train_cfg.rcnn.sampler.num = 32
    detector.test_cfg.rpn.update(nms_pre=100, max_per_img=50)
    cfg.model.semi_train_cfg.jitter_times = 2

    labeled, unlabeled = cfg.train_dataloader.dataset.datasets
    metainfo = dict(classes=SHAPE_CLASSES)
    labeled.update(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train2017.json',
                   data_prefix=dict(img='train2017/'))
    unlabeled.update(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val2017.json',
                     data_prefix=dict(img='val2017/'))
    for dataset in (labeled, unlabeled):
        shrink_pipeline(dataset.pipeline)
    # One labeled and one unlabeled image per batch.
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.sampler.update(batch_size=2, source_ratio=[1, 1])

    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.default_hooks.update(checkpoint=None, logger=dict(type='LoggerHook', interval=1))
    cfg.update(work_dir=str(work_dir), randomness=dict(seed=0))
    return cfg


def record_lavit_forwards(backbone, records):
    """Appends an entry per forward of ``backbone``: grad mode, train mode and each LA layer's (grid, attention)."""

    def start(module, args):
        records.append(dict(grad_enabled=torch.is_grad_enabled(), training=module.training, attention=[]))

    def keep_attention(module, args, output):
        records[-1]['attention'].append((tuple(args[0].shape[1:3]), output[2].detach()))

    backbone.register_forward_pre_hook(start)
    for module in backbone.modules():
        if isinstance(module, LessAttention):
            module.register_forward_hook(keep_attention)


def dp_term(backbone, record):
    """``dp_weight * L_DP`` of one recorded forward: the mean over the LA layers whose grid holds the cells."""
    terms = [layer_dp_terms(attn, hw, backbone.pool_size, backbone.dp_diagonal).sum()
             for hw, attn in record['attention'] if holds_cells(hw, backbone.pool_size)]
    return backbone.dp_weight * torch.stack(terms).mean()


class LaViTForwardsPerIteration(Hook):
    """Keeps, per training iteration, the student's and the teacher's backbone forwards and the logged losses."""

    def __init__(self):
        self.iterations = []

    def before_train(self, runner):
        model = runner.model
        self._student, self._teacher = [], []
        record_lavit_forwards(model.student.backbone, self._student)
        record_lavit_forwards(model.teacher.backbone, self._teacher)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._student.clear()
        self._teacher.clear()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iterations.append(dict(student=list(self._student), teacher=list(self._teacher),
                                    losses={key: value.detach() for key, value in outputs.items()}))


def test_soft_teacher_loss_dp_sums_the_student_forwards(tmp_path):
    data_root = tmp_path / 'shapes_coco'
    make_coco_shapes(str(data_root), num_train=4, num_val=4, size=64, seed=1)
    config_file = tmp_path / 'soft-teacher_faster-rcnn_lavit-t_fpn_semi-coco.py'
    config_file.write_text(SOFT_TEACHER_CONFIG)
    cfg = tiny_soft_teacher_config(config_file, str(data_root) + '/', tmp_path / 'work')
    assert [hook['type'] for hook in cfg.custom_hooks] == ['mmlavit.DPLossHook', 'MeanTeacherHook']
    runner = Runner.from_cfg(cfg)
    recorder = LaViTForwardsPerIteration()
    runner.register_hook(recorder)
    model = runner.model
    assert type(model).__name__ == 'SoftTeacher'

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        runner.train()

    # A forward outside the collection (one the hook did not open) would train no term and warn.
    assert not [w for w in caught if 'no DP loss collection is open' in str(w.message)]
    assert len(recorder.iterations) == 2
    for iteration in recorder.iterations:
        student, teacher, losses = iteration['student'], iteration['teacher'], iteration['losses']
        # SoftTeacher ran the student twice with gradients, and the teacher, in train mode as the Runner
        # leaves the whole model, only under no_grad: no_grad alone keeps it out of loss_dp.
        assert [(r['grad_enabled'], r['training']) for r in student] == [(True, True), (True, True)]
        assert [(r['grad_enabled'], r['training']) for r in teacher] == [(False, True)]
        student_terms = [dp_term(model.student.backbone, record) for record in student]
        teacher_terms = [dp_term(model.teacher.backbone, record) for record in teacher]
        expected = sum(student_terms)
        # Each term is far above the tolerance below, so losing one, or adding the teacher's, shows in loss_dp.
        assert all(term.abs() > 1e-3 * expected.abs() for term in student_terms + teacher_terms)
        assert {'sup_loss_cls', 'unsup_loss_cls', 'loss_dp'} <= set(losses)
        # The sum of both student terms: catches counting only the last forward (the unlabeled batch's
        # term alone) and counting the teacher's forward too (the sum plus the teacher's term).
        torch.testing.assert_close(losses['loss_dp'], expected, rtol=1e-5, atol=0)
