"""LaViT's options as users set them: validation, init_cfg (lists, partial files), qkv_bias, norm_cfg, archs,
layer depths for lr decay, and the inputs it takes."""
import math

import pytest
import torch
from mmengine.model import BaseModule

from mmlavit import LaViT
from mmlavit.models import LaViTConfigError, LaViTInputError
from mmlavit.models.attention import LessAttention, VanillaAttention
from mmlavit.models.lavit import LaViTLayer


@pytest.mark.parametrize('option,value,accepted', [
    ('pool_size', 2.5, 'an int >= 2'), ('pool_size', 1, 'an int >= 2'),
    ('dp_weight', -1, 'a number >= 0'), ('dp_weight', math.inf, 'a number >= 0'),
    ('drop_path_rate', 1.5, r'a rate in \[0, 1\)'), ('attn_drop_rate', -0.1, r'a rate in \[0, 1\)'),
    ('la_kernel', 4, 'an odd int'), ('frozen_stages', 5, r'an int in -1\.\.4'),
])
def test_option_values_outside_their_range_name_the_option(option, value, accepted):
    with pytest.raises(LaViTConfigError, match=rf'{option}={value!r} is not accepted: it must be {accepted}'):
        LaViT(arch='t', **{option: value})


@pytest.mark.parametrize('norm_type', ['BN', 'SyncBN', 'GN'])
def test_norms_other_than_layernorm_are_refused_when_built(norm_type):
    norm_cfg = dict(type=norm_type, num_groups=8) if norm_type == 'GN' else dict(type=norm_type)
    with pytest.raises(LaViTConfigError, match=r"only LayerNorm types.*norm_cfg=dict\(type='LN'\)"):
        LaViT(arch='t', norm_cfg=norm_cfg)


def test_layernorm_options_are_accepted():
    model = LaViT(arch='t', norm_cfg=dict(type='LN', eps=1e-5))
    assert model.stages[0].norm.eps == 1e-5


@pytest.mark.parametrize('alias,arch', [('tiny', 't'), ('small', 's'), ('BASE', 'b')])
def test_long_arch_names(alias, arch):
    assert LaViT(arch=alias).arch_settings == LaViT.arch_zoo[arch]


def test_a_misspelt_pretrained_key_is_an_error_naming_it():
    with pytest.raises(LaViTConfigError, match=r"no key 'checkpont'; it takes type, checkpoint, prefix"):
        LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpont='x.pth'))


@pytest.mark.parametrize('shape,message', [
    ((3, 64, 64), r'takes a batch of images \(B, 3, H, W\), got \(3, 64, 64\); add the batch axis'),
    ((0, 3, 64, 64), 'the batch is empty'),
    ((1, 1, 64, 64), r'takes a batch of images \(B, 3, H, W\) with B >= 1, got \(1, 1, 64, 64\)'),
])
def test_inputs_it_cannot_run_on_are_named(shape, message):
    with pytest.raises(LaViTInputError, match=message):
        LaViT(arch='t')(torch.rand(shape))


def test_init_cfg_list_applies_each_initialiser_on_top_of_the_default():
    model = LaViT(arch='t', init_cfg=[dict(type='Constant', layer='Linear', val=0.5, bias=0.25),
                                      dict(type='Constant', layer='LayerNorm', val=2.0, bias=0.)])
    model.init_weights()
    fc = model.stages[0].layers[0].ffn.fc1
    assert torch.all(fc.weight == 0.5) and torch.all(fc.bias == 0.25)
    assert torch.all(model.stages[2].norm.weight == 2.0)
    # Not a Linear: the default init stays (LA identity, the stem's conv init).
    theta = model.stages[0].layers[1].attn.theta_weight
    torch.testing.assert_close(theta, torch.eye(theta.shape[0]))
    assert model.stages[0].downsample.proj.weight.std() > 0.01


def test_partial_pretrained_file_keeps_lavits_init_for_what_it_lacks(tmp_path):
    """A file without stage 2's layers and the stem: those start as a fresh model's, the rest loads."""
    source = LaViT(arch='t')
    source.init_weights()
    with torch.no_grad():
        for param in source.parameters():
            param.add_(1.0)
    kept = {key: value for key, value in source.state_dict().items()
            if not key.startswith(('stages.1.layers.', 'stages.0.downsample.'))}
    path = tmp_path / 'partial.pth'
    torch.save(dict(state_dict=kept), path)

    model = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    fresh = LaViT(arch='t')
    fresh.init_weights()
    state = model.state_dict()
    for key, value in kept.items():
        torch.testing.assert_close(state[key], value)
    # A missing layer: the std of LaViT's init (1x1-conv init sqrt(2 / fan_out) for the FFN, sqrt(2 / fan_out) for
    # the stem conv), not PyTorch's default (kaiming-uniform, std 1 / sqrt(3 fan_in)).
    fc1 = model.stages[1].layers[0].ffn.fc1.weight
    expected_std = math.sqrt(2.0 / fc1.shape[0])
    assert abs(fc1.std().item() - expected_std) < 0.05 * expected_std
    assert abs(fc1.std().item() - fresh.stages[1].layers[0].ffn.fc1.weight.std().item()) < 0.05 * expected_std
    stem = model.stages[0].downsample.proj.weight
    stem_std = math.sqrt(2.0 / (4 * 4 * stem.shape[0]))
    assert abs(stem.std().item() - stem_std) < 0.1 * stem_std
    theta = model.stages[1].layers[1].attn.theta_weight
    torch.testing.assert_close(theta, torch.eye(theta.shape[0]))


def test_pretrained_in_a_list_loads_after_the_other_initialisers(tmp_path):
    source = LaViT(arch='t')
    path = tmp_path / 'full.pth'
    torch.save(source.state_dict(), path)
    model = LaViT(arch='t', init_cfg=[dict(type='Constant', layer='Linear', val=0.),
                                      dict(type='Pretrained', checkpoint=str(path))])
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_deprecated_pretrained_loads_as_an_init_cfg_with_a_warning(tmp_path):
    """As mmdet's and mmseg's backbones: a path becomes a Pretrained init_cfg; None is ignored."""
    source = LaViT(arch='t')
    path = tmp_path / 'lavit_t.pth'
    torch.save(source.state_dict(), path)
    with pytest.warns(UserWarning, match='pretrained is deprecated.*init_cfg'):
        model = LaViT(arch='t', pretrained=str(path))
    assert model.init_cfg == dict(type='Pretrained', checkpoint=str(path))
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert LaViT(arch='t', pretrained=None).init_cfg is None
    with pytest.raises(LaViTConfigError, match='pretrained=.*without an init_cfg'):
        LaViT(arch='t', pretrained=str(path), init_cfg=dict(type='Pretrained', checkpoint=str(path)))


def test_qkv_bias_false_removes_the_query_key_and_value_biases():
    model = LaViT(arch='t', qkv_bias=False)
    for module in model.modules():
        if isinstance(module, VanillaAttention):
            assert module.query.bias is None and module.cell_proj.bias is None
            assert module.cells.proj.bias is not None  # the spatial reduction keeps its bias, as PVTv2's
        elif isinstance(module, LessAttention):
            assert module.cell_proj.bias is None
    with_bias = sum(p.numel() for p in LaViT(arch='t').parameters())
    without = sum(p.numel() for p in model.parameters())
    # Per VA layer 3 C biases (query, key, value), per LA layer C (value).
    expected = sum((1 if layer.less_attention else 3) * dims
                   for stage, dims in zip(model.stages, model.embed_dims) for layer in stage.layers)
    assert with_bias - without == expected


def test_checkpoints_with_key_value_biases_but_no_query_bias_load_exactly():
    """qkv_bias=False checkpoints from before it covered keys and values: qkv_bias=True with a zero query bias."""
    model = LaViT(arch='t').eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, VanillaAttention):
                module.query.bias.zero_()
    old_format = {key: value for key, value in model.state_dict().items() if not key.endswith('query.bias')}
    loaded = LaViT(arch='t').eval()
    with torch.no_grad():
        for module in loaded.modules():
            if isinstance(module, VanillaAttention):
                module.query.bias.fill_(1.0)
    result = loaded.load_state_dict(old_format, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for out, expected in zip(loaded(x), model(x)):
            torch.testing.assert_close(out, expected)


def test_layer_arguments_say_which_scores_they_are():
    va = LaViTLayer(32, 2, 2, less_attention=False, pool_size=3)
    la = LaViTLayer(32, 2, 2, less_attention=True, pool_size=3)
    x = torch.rand(1, 6, 6, 32)
    _, scores, _ = va(x, attn_bias=torch.zeros(1, 2, 9, 36))
    out, la_scores, _ = la(x, prev_scores=scores)
    torch.testing.assert_close(la_scores, scores)  # LA at its identity start reuses the scores
    with pytest.raises(ValueError, match='pass the attention residual as attn_bias'):
        va(x, prev_scores=scores)
    with pytest.raises(ValueError, match='an LA layer re-parameterises prev_scores'):
        la(x)


def test_layer_depths_follow_mmpretrains_contract():
    """LaViT-S: depths (3, 4, 6, 4), 17 layers, 19 depths; Swin's rule for norms and merging."""
    model = LaViT(arch='s')
    depths = model.arch_settings['depths']
    assert depths == [3, 4, 6, 4]
    total = sum(depths) + 2

    def depth(name):
        layer, count = model.get_layer_depth(name, 'backbone.')
        assert count == total
        return layer

    assert depth('backbone.stages.0.downsample.proj.weight') == 0
    assert depth('backbone.stages.0.layers.0.attn.query.weight') == 1
    assert depth('backbone.stages.0.layers.2.ffn.fc1.weight') == 3
    assert depth('backbone.stages.0.norm.weight') == 3
    assert depth('backbone.stages.1.downsample.proj.weight') == 3
    assert depth('backbone.stages.1.attn_residual.gamma') == 3
    assert depth('backbone.stages.1.layers.0.norm1.weight') == 4
    assert depth('backbone.stages.2.layers.5.attn.theta_weight') == 3 + 4 + 6
    assert depth('backbone.stages.3.layers.3.ffn.fc2.bias') == sum(depths)
    assert depth('backbone.stages.3.norm.bias') == sum(depths)
    assert depth('neck.lateral_convs.0.conv.weight') == total - 1
    # Every backbone parameter gets a depth below the neck's.
    assert all(depth('backbone.' + name) < total - 1 for name, _ in model.named_parameters())


def test_layer_depth_without_prefix():
    model = LaViT(arch='t')
    assert model.get_layer_depth('stages.1.layers.1.attn.psi_weight') == (4, 10)
    assert isinstance(model, BaseModule)


@pytest.mark.parametrize('arch,paper_params', [('t', 10.9), ('s', 22.4), ('b', 39.6)])
def test_variants_have_the_papers_parameter_budget(arch, paper_params):
    """Within 3% of the parameters the paper reports (10.9M, 22.4M, 39.6M); their FLOPs: tools/get_flops.py."""
    params = sum(param.numel() for param in LaViT(arch=arch).parameters()) / 1e6
    assert abs(params - paper_params) <= 0.03 * paper_params, params
    assert LaViT(arch=arch).embed_dims == [64, 128, 320, 512]
