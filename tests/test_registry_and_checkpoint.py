"""One registration for all three frameworks; pretrained hand-off through init_cfg."""
import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS as CLS_MODELS
from mmseg.registry import MODELS as SEG_MODELS

from log_capture import LogCapture
from mmlavit import LaViT


@pytest.mark.parametrize('registry', [DET_MODELS, SEG_MODELS, CLS_MODELS], ids=['mmdet', 'mmseg', 'mmpretrain'])
@pytest.mark.parametrize('type_name', ['mmlavit.LaViT', 'LaViT'])
def test_resolves_from_every_framework(registry, type_name):
    assert registry.get(type_name) is LaViT
    model = registry.build(dict(type=type_name, arch='t', out_indices=(3, )))
    assert isinstance(model, LaViT) and model.out_indices == (3, )


def classifier_checkpoint(tmp_path, arch='t', **backbone_args):
    """Saves an mmpretrain ImageClassifier with a LaViT backbone as mmengine would."""
    init_default_scope('mmpretrain')  # an earlier test may have left another framework's scope
    classifier = CLS_MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='mmlavit.LaViT', arch=arch, out_indices=(3, ), **backbone_args),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=512,
                  loss=dict(type='CrossEntropyLoss'))))
    path = tmp_path / 'classifier.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': classifier.state_dict()}, path)
    return classifier, str(path)


def test_mmpretrain_checkpoint_initialises_mmdet_backbone(tmp_path):
    classifier, path = classifier_checkpoint(tmp_path)
    init_default_scope('mmdet')
    backbone = DET_MODELS.build(dict(type='mmlavit.LaViT', arch='t',
                                     init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')))
    with LogCapture() as logs:
        backbone.init_weights()
    assert not any('missing keys' in message or 'unexpected key' in message for message in logs.messages)
    source = classifier.backbone.state_dict()
    assert backbone.state_dict().keys() == source.keys()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_mismatched_checkpoint_logs_missing_and_unexpected_keys(tmp_path):
    # LaViT-T with a third layer in stage 3 and no attention residual: shapes agree wherever keys meet.
    tiny = LaViT.arch_zoo['t']
    arch = dict(tiny, depths=[depth + (index == 2) for index, depth in enumerate(tiny['depths'])])
    _, path = classifier_checkpoint(tmp_path, arch=arch, attn_residual=False)
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    with LogCapture() as logs:
        backbone.init_weights()
    text = '\n'.join(logs.messages)
    assert 'missing keys in source state_dict' in text and 'stages.1.attn_residual.gamma' in text
    assert 'unexpected key in source state_dict' in text and 'stages.2.layers.2.attn' in text


def test_checkpoint_with_wrong_prefix_is_a_clear_error(tmp_path):
    _, path = classifier_checkpoint(tmp_path)
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=path, prefix='img_backbone.'))
    with pytest.raises(ValueError, match=r"prefix 'img_backbone\.'.*'backbone\.stages\.'"):
        backbone.init_weights()


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1), 'fc.bias': torch.zeros(1)}, path)
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match='none of the 2 weights'):
        backbone.init_weights()


def test_missing_checkpoint_names_the_path():
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint='/nowhere/lavit_t.pth'))
    with pytest.raises(FileNotFoundError, match='/nowhere/lavit_t.pth.*init_cfg'):
        backbone.init_weights()


def test_from_scratch_init_logs_and_keeps_la_identity():
    backbone = LaViT(arch='t')
    with LogCapture() as logs:
        backbone.init_weights()
    assert any('training starts from scratch' in message for message in logs.messages)
    la = backbone.stages[0].layers[1].attn
    assert torch.equal(la.theta_weight, torch.eye(49))

