"""ImageNet pretraining of LaViT in mmpretrain and the hand-off of its checkpoint to mmdet and mmseg."""
import json
import math
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmlavit import LaViT
from mmlavit.cli.demo_data import SHAPE_CLASSES
from mmlavit.cli.tool_process import REPO
from tool_calls import call_tool

DEMO_CONFIG = 'configs/demo/lavit_t_shapes_imagenet.py'


def build_model(config, scope, **backbone_overrides):
    """The model of a shipped config, built in its framework's registry scope."""
    cfg = Config.fromfile(REPO / 'configs' / config)
    cfg.model.backbone.update(backbone_overrides)
    init_default_scope(scope)
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('arch', ['t', 's', 'b'])
def test_shipped_classifier_builds_and_classifies(arch):
    """On the meta device: the shapes of the CPU computation, without its arithmetic."""
    with torch.device('meta'):
        model = build_model(f'lavit-{arch}_16xb64_in1k.py', 'mmpretrain').eval()
        assert isinstance(model.backbone, LaViT) and model.backbone.out_indices == (3, )
        assert model.backbone.arch_settings == LaViT.arch_zoo[arch]
        logits = model(torch.empty(2, 3, 224, 224), mode='tensor')
    assert logits.shape == (2, 1000)


@pytest.fixture(scope='module')
def pretrained(cls_run):
    """Two epochs of tools/train.py on the generated ImageNet-format set (the session's cls_run)."""
    return cls_run


@pytest.mark.slow
def test_pretraining_logs_loss_dp_and_saves_a_checkpoint(pretrained):
    work_dir, stdout = pretrained
    [scalars] = work_dir.glob('*/vis_data/scalars.json')
    train_logs = [json.loads(line) for line in scalars.read_text().splitlines()]
    train_logs = [log for log in train_logs if 'loss' in log]
    # 24 images in batches of 16: 2 iterations per epoch, each logged.
    assert len(train_logs) == 4
    assert all('loss_dp' in log and math.isfinite(log['loss_dp']) for log in train_logs)
    assert re.search(r'Epoch\(val\) \[2\]\[\d+/\d+\]\s+accuracy/top1: [\d.]+', stdout)
    checkpoint = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['dataset_meta']['classes'] == SHAPE_CLASSES


@pytest.fixture(scope='module')
def backbone_only(pretrained, tmp_path_factory):
    """tools/convert_checkpoint.py's output for the pretraining checkpoint: (path, stdout)."""
    work_dir, _ = pretrained
    path = tmp_path_factory.mktemp('converted') / 'lavit_t_backbone.pth'
    process = call_tool('tools/convert_checkpoint.py', work_dir / 'epoch_2.pth', path)
    assert process.returncode == 0, process.stderr[-3000:]
    return path, process.stdout


@pytest.mark.slow
def test_convert_checkpoint_keeps_the_backbone_and_reports_the_rest(pretrained, backbone_only):
    path, stdout = backbone_only
    backbone_keys = LaViT(arch='t').state_dict().keys()
    assert f'kept {len(backbone_keys)} tensors of backbone.*' in stdout
    assert "matches LaViT arch='t' exactly" in stdout
    assert 'dropped 2 other weights: head.fc.weight, head.fc.bias' in stdout
    assert re.search(r'dropped checkpoint entries: .*message_hub.*optimizer', stdout)
    converted = torch.load(path, map_location='cpu', weights_only=False)
    assert converted['state_dict'].keys() == backbone_keys


@pytest.mark.slow
@pytest.mark.parametrize('checkpoint_kind', ['mmpretrain', 'backbone-only'])
@pytest.mark.parametrize('config,scope', [
    ('mask-rcnn_lavit-t_fpn_1x_coco.py', 'mmdet'),
    ('upernet_lavit-t_8xb2-160k_ade20k-512x512.py', 'mmseg'),
], ids=['mask_rcnn', 'upernet'])
def test_pretrained_checkpoint_initialises_det_and_seg_backbones(pretrained, backbone_only, checkpoint_kind,
                                                                 config, scope):
    work_dir, _ = pretrained
    path = work_dir / 'epoch_2.pth' if checkpoint_kind == 'mmpretrain' else backbone_only[0]
    model = build_model(config, scope, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                     prefix='backbone.'))
    model.init_weights()
    source = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=False)['state_dict']
    backbone = model.backbone.state_dict()
    assert backbone.keys() <= {key[len('backbone.'):] for key in source if key.startswith('backbone.')}
    for key, value in backbone.items():
        assert torch.equal(value, source['backbone.' + key]), key
