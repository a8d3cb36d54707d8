"""Detection end to end: shipped configs, loss_dp in the loss dict, the user-config case, the tools."""
import os
import re
import subprocess
import sys
import types

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import HOOKS, init_default_scope

import mmlavit
from conftest import det_options, succeeded
from mmlavit.cli.tool_process import REPO
from tool_calls import call_tool, run_tool

DEMO_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'


def build_detector(cfg):
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def loss_step(model, with_mask):
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 125, 130]], with_mask=with_mask)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total, log_vars = model.parse_losses(losses)
    return packed, losses, total, log_vars


@pytest.mark.slow
@pytest.mark.parametrize('config,with_mask', [('configs/mask-rcnn_lavit-t_fpn_1x_coco.py', True),
                                              ('configs/retinanet_lavit-t_fpn_1x_coco.py', False)])
def test_shipped_config_loss_predict_tensor(config, with_mask):
    cfg = Config.fromfile(os.path.join(REPO, config))
    model = build_detector(cfg)
    assert isinstance(model.backbone, mmlavit.LaViT)
    mmlavit.attach_dp_loss(model)
    packed, losses, total, log_vars = loss_step(model, with_mask)
    assert 'loss_dp' in losses and losses['loss_dp'].requires_grad
    # parse_losses sums every key holding 'loss' into the back-propagated total.
    summed = sum(value.item() if torch.is_tensor(value) else sum(v.item() for v in value)
                 for key, value in losses.items() if 'loss' in key)
    assert total.item() == pytest.approx(summed, rel=1e-5) and 'loss_dp' in log_vars
    total.backward()
    theta = model.backbone.stages[0].layers[1].attn.theta_weight
    assert theta.grad is not None and theta.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad(), mmlavit.collect_dp_loss() as dp:
        data = model.data_preprocessor(packed, False)
        predictions = model(**data, mode='predict')
        features = model(**data, mode='tensor')
    assert len(predictions) == 2 and 'bboxes' in predictions[0].pred_instances
    assert with_mask == ('masks' in predictions[0].pred_instances)
    assert isinstance(features, tuple) and len(features) > 0
    assert dp.loss is None  # nothing computed in eval mode


def test_dp_weight_zero_removes_loss_dp():
    cfg = Config.fromfile(os.path.join(REPO, 'configs/retinanet_lavit-t_fpn_1x_coco.py'))
    cfg.model.backbone.dp_weight = 0.
    model = build_detector(cfg)
    mmlavit.attach_dp_loss(model)
    _, losses, _, _ = loss_step(model, False)
    assert 'loss_dp' not in losses and {'loss_cls', 'loss_bbox'} <= set(losses)


USER_CONFIG = '''
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlavit'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='mmlavit.LaViT', arch='t'),
    neck=dict(in_channels=[64, 128, 320, 512]))
custom_hooks = [dict(type='mmlavit.DPLossHook')]
'''


def test_user_faster_rcnn_config_with_swapped_backbone(tmp_path):
    config = tmp_path / 'faster-rcnn_lavit-t_fpn_1x_coco.py'
    config.write_text(USER_CONFIG)
    cfg = Config.fromfile(str(config))
    model = build_detector(cfg)
    assert type(model).__name__ == 'FasterRCNN'
    hook = HOOKS.build(cfg.custom_hooks[0])
    # What mmengine's Runner hands the hook before training: an object with the model.
    hook.before_train(types.SimpleNamespace(model=model))
    _, losses, total, _ = loss_step(model, False)
    assert {'loss_dp', 'loss_rpn_cls', 'loss_cls', 'loss_bbox'} <= set(losses)
    total.backward()
    assert model.backbone.stages[2].layers[1].attn.psi_weight.grad.abs().sum() > 0
    hook.after_train(None)
    _, losses, _, _ = loss_step(model, False)
    assert 'loss_dp' not in losses


@pytest.mark.slow
def test_train_resume_test(det_run, coco_shapes, tmp_path):
    """tools/train.py for an epoch, then --resume for a second (the session's det_run), then tools/test.py."""
    first, resumed = det_run.logs
    # loss_dp, and its unweighted parts L_sym and L_diag, which show at the 6 decimals the DPLossHook asks for.
    logged = re.search(r'Epoch\(train\) \[1\]\[2/2\].*loss_dp: .*dp_sym: (\S+)  dp_diag: (\S+)', first)
    assert logged and float(logged[1]) > 0 and float(logged[2]) != 0, first[-3000:]
    assert 'No pre-trained weights for LaViT, training starts from scratch' in first

    assert 'resumed epoch: 1, iter: 2' in resumed
    assert 'Epoch(train) [1]' not in resumed and re.search(r'Epoch\(train\) \[2\]\[2/2\]', resumed)
    checkpoint = torch.load(det_run.work_dir / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['iter'] == 4
    adamw_steps = {float(state['step']) for state in checkpoint['optimizer']['state'].values()}
    assert adamw_steps == {4.0}  # two iterations before the resume, two after

    log = succeeded(call_tool('tools/test.py', DEMO_CONFIG, det_run.work_dir / 'epoch_2.pth', '--work-dir', tmp_path,
                              '--cfg-options', f'data_root={coco_shapes}'))
    assert re.search(r'coco/bbox_mAP: [0-9.]+', log) and re.search(r'coco/segm_mAP: [0-9.]+', log)


@pytest.mark.slow
@pytest.mark.parametrize('frozen_stages,with_cp', [(1, True), (4, False)])
def test_two_process_cpu_ddp_trains_with_frozen_stages(coco_shapes, tmp_path, frozen_stages, with_cp):
    """Fine-tuning as users do: DDP (gloo, 2 processes), a pretrained backbone, frozen stages.

    DDP registers the parameters that need gradients when mmengine's Runner wraps the model, before
    training starts: frozen stages must already be frozen then, or DDP waits for gradients that never come.
    """
    pretrained = mmlavit.LaViT(arch='t').state_dict()
    backbone_file = tmp_path / 'lavit_t_backbone.pth'
    torch.save({'state_dict': pretrained}, backbone_file)
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(29500 + os.getpid() % 1000), OMP_NUM_THREADS='1')
    # 8 images, batch 4 per process: one iteration per epoch.
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', DEMO_CONFIG, '2', '--work-dir', str(tmp_path / 'ddp'),
         *det_options(coco_shapes, 2), f'model.backbone.frozen_stages={frozen_stages}',
         f'model.backbone.with_cp={with_cp}', f'model.backbone.init_cfg.checkpoint={backbone_file}'],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    assert re.search(r'Epoch\(train\) \[2\]\[1/1\]', log), log[-3000:]
    if frozen_stages < 4:
        assert re.search(r'Epoch\(train\) \[1\]\[1/1\].*loss_dp: ', log), log[-3000:]

    trained = torch.load(tmp_path / 'ddp' / 'epoch_2.pth', map_location='cpu', weights_only=False)['state_dict']
    frozen_prefixes = ('stages.0.downsample.', ) + tuple(f'stages.{index}.' for index in range(frozen_stages))
    for key, value in pretrained.items():
        is_frozen = key.startswith(frozen_prefixes)
        assert torch.equal(trained['backbone.' + key], value) == is_frozen, key
    # The neck and heads train in every case (with frozen_stages=4 they are all that trains).
    first = torch.load(tmp_path / 'ddp' / 'epoch_1.pth', map_location='cpu', weights_only=False)['state_dict']
    for key in ('neck.lateral_convs.0.conv.weight', 'rpn_head.rpn_conv.weight', 'roi_head.bbox_head.fc_cls.weight'):
        assert not torch.equal(trained[key], first[key]), key


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the machine without CUDA')
def test_amp_without_cuda_says_what_it_needs(coco_shapes, tmp_path):
    process = call_tool('tools/train.py', DEMO_CONFIG, '--amp', '--work-dir', tmp_path, *det_options(coco_shapes, 1))
    assert process.returncode != 0
    assert '--amp needs a GPU' in process.stderr and 'Traceback' not in process.stderr


@pytest.mark.slow
def test_missing_coco_stops_with_a_clear_message(tmp_path):
    """As the user runs it, from another directory: the tool's process test."""
    process = run_tool(os.path.join(REPO, 'tools/train.py'), os.path.join(REPO, 'configs/mask_rcnn_lavit_s_coco.py'),
                       cwd=str(tmp_path))
    code, log = process.returncode, process.stdout + process.stderr
    assert code != 0
    assert 'CocoDataset data not found: data/coco/annotations/instances_train2017.json does not exist' in log
    assert '--cfg-options data_root=' in log and 'Traceback' not in log

    process = call_tool('tools/train.py', 'configs/mask_rcnn_lavit_s_coco.py', '--cfg-options',
                        f'data_root={tmp_path}/elsewhere/')
    code, log = process.returncode, process.stdout + process.stderr
    assert code != 0 and f'{tmp_path}/elsewhere/annotations/instances_train2017.json does not exist' in log
