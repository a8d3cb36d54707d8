"""A checkpoint that does not fit the model is an error that says what it holds, and convert_checkpoint
writes only LaViT backbones."""
import logging
import re

import pytest
import torch
import torchvision

from log_capture import LogCapture
from mmlavit import LaViT
from mmlavit.cli.checkpoint_fit import check_checkpoint_fits, describe_checkpoint
from mmlavit.cli.runner import build_model
from mmlavit.models.pretrained import load_backbone_state_dict
from mmlavit.utils.checkpoint import CheckpointMismatchError
from tool_calls import call_tool, run_tool

DET_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
# LaViT-T's depths with other widths (each stage's heads still divide its channels).
NARROW_T = dict(LaViT.arch_zoo['t'], embed_dims=[32, 64, 160, 256])


def save(state_dict, path):
    torch.save({'meta': {'epoch': 1}, 'state_dict': state_dict}, path)
    return str(path)


def with_prefix(prefix, state_dict):
    return {prefix + key: value for key, value in state_dict.items()}


def keys_lavit_s_takes_from_lavit_t():
    """Counted by hand from the two archs, unit by unit.

    Every stage's downsampling, attention residual and closing norm; every
    layer that both archs have, of the same kind (VA or LA); and where LaViT-S
    has a VA layer and LaViT-T an LA layer, all of the VA layer but its query
    weight (an LA layer has no query projection; the VA layer fills in a query
    bias of zero, as for checkpoints written before qkv_bias covered it) and
    its cell projection (keys and values in a VA layer, values only in an LA
    layer).
    """
    tiny, small = LaViT.arch_zoo['t'], LaViT.arch_zoo['s']
    assert all(tiny[key] == small[key] for key in ('embed_dims', 'num_heads', 'mlp_ratios')), \
        'the count assumes LaViT-T and LaViT-S of the same widths'
    model = LaViT(arch='s')
    count = 0
    for index, stage in enumerate(model.stages):
        count += len(stage.state_dict()) - len(stage.layers.state_dict())
        for position in range(min(tiny['depths'][index], small['depths'][index])):
            layer_keys = len(stage.layers[position].state_dict())
            same_kind = (position < tiny['va_layers'][index]) == (position < small['va_layers'][index])
            count += layer_keys if same_kind else layer_keys - 3  # query.weight, cell_proj.weight and .bias
    return count, len(model.state_dict())


def test_backbone_of_another_arch_names_it_and_counts_the_keys(tmp_path):
    path = save(LaViT(arch='t').state_dict(), tmp_path / 'lavit_t.pth')
    matched, total = keys_lavit_s_takes_from_lavit_t()
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_fits(LaViT(arch='s'), path)
    message = str(error.value)
    assert message.startswith(f'checkpoint {path} does not fit the model: {matched} of the model\'s {total} '
                              f'keys match it, ')
    assert '4 have another shape (stages.1.layers.1.attn.cell_proj.weight: (256, 128) in the model, (128, 128)' \
           in message
    assert "It holds LaViT arch 't' weights without a prefix (a backbone-only checkpoint); the model is a LaViT " \
           "of arch 's'." in message
    assert message.endswith("Use a config whose LaViT has arch 't' (--cfg-options model.arch=t) or a checkpoint of "
                            "arch 's'. Or pass --allow-partial-checkpoint to load only what fits.")
    assert len(message.splitlines()) == 3


@pytest.fixture(scope='module')
def detector():
    """The demo Mask R-CNN with a LaViT-T backbone (under 'backbone.')."""
    return build_model(DET_CONFIG)


def test_backbone_only_checkpoint_for_a_detector(detector, tmp_path):
    path = save(detector.backbone.state_dict(), tmp_path / 'backbone.pth')
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_fits(detector, path)
    message = str(error.value)
    assert f"0 of the model's {len(detector.state_dict())} keys match it" in message
    assert "It holds LaViT arch 't' weights without a prefix (a backbone-only checkpoint); the model's LaViT is " \
           "arch 't' under the prefix 'backbone.'." in message
    assert f'--cfg-options model.backbone.init_cfg.checkpoint={path}' in message


def test_checkpoint_of_another_model_holds_no_lavit(tmp_path):
    state_dict = torchvision.models.resnet18().state_dict()
    path = save(state_dict, tmp_path / 'resnet18.pth')
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_fits(LaViT(arch='t'), path)
    assert (f'It holds no LaViT weights: its {len(state_dict)} keys start with conv1., bn1., layer1., layer2., '
            f'layer3., layer4., fc.; the model is a LaViT of arch \'t\'.') in str(error.value)
    assert 'Pass a checkpoint of this model' in str(error.value)


def test_checkpoint_that_fits_passes_with_extra_keys_and_a_wrapper_prefix(detector, tmp_path):
    state_dict = with_prefix('module.', detector.state_dict())
    state_dict['ema_backbone.stages.0.norm.weight'] = torch.ones(64)
    check_checkpoint_fits(detector, save(state_dict, tmp_path / 'detector.pth'))


def test_partial_checkpoint_allowed_warns(tmp_path):
    path = save(LaViT(arch='t').state_dict(), tmp_path / 'lavit_t.pth')
    matched, total = keys_lavit_s_takes_from_lavit_t()
    with LogCapture(logging.WARNING) as logged:
        check_checkpoint_fits(LaViT(arch='s'), path, allow_partial=True)
    assert any(message.startswith(f'checkpoint {path} fits the model only in part (--allow-partial-checkpoint): '
                                  f'{matched} of the model\'s {total} keys match it') for message in logged.messages)


def test_pretrained_init_cfg_loads_the_part_that_matches(tmp_path):
    source = LaViT(arch='t').state_dict()
    part = {key: value for key, value in source.items() if not key.startswith('stages.3.')}
    path = save(with_prefix('backbone.', part), tmp_path / 'lavit_t_stages_0-2.pth')
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    with LogCapture(logging.WARNING) as logged:
        backbone.init_weights()
    assert 'missing keys in source state_dict: stages.3.downsample.proj.weight' in '\n'.join(logged.messages)
    loaded = backbone.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in part.items())
    assert not torch.equal(loaded['stages.3.downsample.proj.weight'], source['stages.3.downsample.proj.weight'])


@pytest.mark.parametrize('file_arch,model_arch,names', [
    ('t', 's', "the checkpoint holds LaViT arch 't' weights under the prefix 'backbone.'"),
    ('t', NARROW_T, "the checkpoint holds LaViT arch 't' weights under the prefix 'backbone.'"),
    (NARROW_T, 't', "the checkpoint holds LaViT weights of no shipped arch under the prefix 'backbone.'"),
], ids=['t-for-s', 't-for-custom', 'custom-for-t'])
def test_pretrained_init_cfg_refuses_weights_of_another_arch(tmp_path, file_arch, model_arch, names):
    path = save(with_prefix('backbone.', LaViT(arch=file_arch).state_dict()), tmp_path / 'other_arch.pth')
    backbone = LaViT(arch=model_arch)
    with pytest.raises(CheckpointMismatchError) as error:
        load_backbone_state_dict(dict(type='Pretrained', checkpoint=path, prefix='backbone.'), backbone)
    message = str(error.value)
    builds = f'arch {model_arch!r}' if isinstance(model_arch, str) else 'a custom arch'
    assert names in message and f'the config builds {builds}' in message
    fix = ('--cfg-options model.backbone.arch=t' if isinstance(file_arch, str) else
           'Build the backbone with the options the checkpoint was trained with')
    assert fix in message and message.endswith(f'or use a checkpoint of {builds}.')


def test_describe_a_classifier_checkpoint():
    state_dict = with_prefix('backbone.', LaViT(arch='b').state_dict())
    state_dict['head.fc.weight'] = torch.zeros(10, 512)
    assert describe_checkpoint(state_dict) == (
        "LaViT arch 'b' weights under the prefix 'backbone.' (a detector's, segmentor's or classifier's checkpoint)")


@pytest.mark.parametrize('prefix_option', [[], ['--prefix', '']], ids=['found', 'none-given'])
def test_convert_backbone_only_checkpoint(tmp_path, prefix_option):
    source = LaViT(arch='t').state_dict()
    src, dst = save(source, tmp_path / 'backbone.pth'), tmp_path / 'converted.pth'
    process = call_tool('tools/convert_checkpoint.py', src, dst, *prefix_option)
    assert process.returncode == 0, process.stderr[-3000:]
    assert re.search(rf'kept {len(source)} tensors \([\d.]+M values\), no prefix to strip', process.stdout)
    assert "matches LaViT arch='t' exactly" in process.stdout and 'dropped 0 other weights: none' in process.stdout
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['prefix'] == '' and converted['meta']['arch'] == 't'
    assert converted['state_dict'].keys() == source.keys()
    assert all(torch.equal(converted['state_dict'][key], value) for key, value in source.items())


@pytest.mark.parametrize('prefix_option,error', [
    ([], "error: no key of {src} starts with 'backbone.' (it holds no LaViT weights: its 122 keys start with conv1."),
    (['--prefix', ''], "error: the 122 tensors of {src} under '' are no shipped LaViT arch ('t', 's', 'b'): it "
                       "holds no LaViT weights"),
], ids=['found', 'none-given'])
def test_convert_refuses_a_checkpoint_without_lavit(tmp_path, prefix_option, error):
    src = save(torchvision.models.resnet18().state_dict(), tmp_path / 'resnet18.pth')
    dst = tmp_path / 'converted.pth'
    dst.write_bytes(b'an earlier conversion')
    process = call_tool('tools/convert_checkpoint.py', src, dst, *prefix_option)
    assert process.returncode == 1 and error.format(src=src) in process.stderr, process.stderr[-3000:]
    assert dst.read_bytes() == b'an earlier conversion'


@pytest.mark.slow
def test_convert_writes_a_custom_arch_only_when_allowed(tmp_path):
    """As the user runs it, as a process: the tool's process test."""
    source = LaViT(arch=NARROW_T).state_dict()
    src, dst = save(with_prefix('backbone.', source), tmp_path / 'narrow.pth'), tmp_path / 'converted.pth'
    refused = call_tool('tools/convert_checkpoint.py', src, dst)
    assert refused.returncode == 1 and not dst.exists()
    assert 'Nothing was written; to convert the weights of a custom arch, pass --allow-custom-arch.' in refused.stderr
    allowed = run_tool('tools/convert_checkpoint.py', src, dst, '--allow-custom-arch')
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert 'matches no shipped LaViT arch exactly' in allowed.stdout
    assert torch.load(dst, weights_only=True)['state_dict'].keys() == source.keys()
