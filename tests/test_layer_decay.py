"""Layer-wise learning-rate decay: the rate of every parameter of real mmdet, mmseg and mmpretrain models.

The expected depths are counted by hand for LaViT-T (depths 2, 2, 2, 2: L = 8 layers) as mmpretrain counts
its Swin: the stem 0, the layers 1..8 through the stages, a stage's closing norm with its last layer, the
merging and attention residual at the start of a stage with the previous stage's last layer, and everything
outside the backbone L + 1 = 9, of L + 2 = 10 depths. A parameter at depth d trains at
lr * rate ** (9 - d): the neck and heads at the base rate, the stem at rate ** 9.
"""
import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from mmlavit.cli.tool_process import REPO
from mmlavit.engine.layer_decay import layer_depth_function

RATE = 0.5
#: Depth of the backbone parameters under each prefix (LaViT-T).
BACKBONE_DEPTHS = {
    'stages.0.downsample.': 0,
    'stages.0.layers.0.': 1,
    'stages.0.layers.1.': 2,
    'stages.0.norm.': 2,
    'stages.1.downsample.': 2,
    'stages.1.attn_residual.': 2,
    'stages.1.layers.0.': 3,
    'stages.1.layers.1.': 4,
    'stages.1.norm.': 4,
    'stages.2.downsample.': 4,
    'stages.2.attn_residual.': 4,
    'stages.2.layers.0.': 5,
    'stages.2.layers.1.': 6,
    'stages.2.norm.': 6,
    'stages.3.downsample.': 6,
    'stages.3.attn_residual.': 6,
    'stages.3.layers.0.': 7,
    'stages.3.layers.1.': 8,
    'stages.3.norm.': 8,
}
OUTSIDE_THE_BACKBONE = 9


def expected_depth(name):
    if not name.startswith('backbone.'):
        return OUTSIDE_THE_BACKBONE
    [depth] = [depth for prefix, depth in BACKBONE_DEPTHS.items() if name.startswith('backbone.' + prefix)]
    return depth


def build(config, constructor):
    """The config's model and its optimizer wrapper built with ``constructor`` at decay rate :data:`RATE`."""
    cfg = Config.fromfile(str(REPO / config))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    cfg.optim_wrapper.constructor = constructor
    cfg.optim_wrapper.setdefault('paramwise_cfg', {})['layer_decay_rate'] = RATE
    return model, cfg.optim_wrapper, build_optim_wrapper(model, cfg.optim_wrapper)


def rates_by_name(model, optim_wrapper):
    names = {id(param): name for name, param in model.named_parameters()}
    return {names[id(group['params'][0])]: group for group in optim_wrapper.optimizer.param_groups}


def check_decayed_rates(model, optim_wrapper, base_lr):
    groups = rates_by_name(model, optim_wrapper)
    assert set(groups) == {name for name, _ in model.named_parameters()}
    depths = {expected_depth(name) for name in groups}
    assert depths == set(range(OUTSIDE_THE_BACKBONE + 1))  # the stem, every layer, the neck and heads
    for name, group in groups.items():
        assert group['lr'] == pytest.approx(base_lr * RATE**(OUTSIDE_THE_BACKBONE - expected_depth(name))), name
    return groups


@pytest.mark.parametrize('config,head', [
    ('configs/demo/mask_rcnn_lavit_t_shapes.py', 'neck.lateral_convs.0.conv.weight'),
    ('configs/demo/upernet_lavit_t_shapes_ade.py', 'decode_head.conv_seg.weight'),
])
def test_lavit_constructor_decays_the_rates_of_detectors_and_segmentors(config, head):
    model, optim_cfg, optim_wrapper = build(config, 'mmlavit.LayerDecayOptimWrapperConstructor')
    groups = check_decayed_rates(model, optim_wrapper, optim_cfg.optimizer.lr)
    stem = groups['backbone.stages.0.downsample.proj.weight']
    assert stem['lr'] == pytest.approx(optim_cfg.optimizer.lr / 512) and groups[head]['lr'] == optim_cfg.optimizer.lr
    # The default constructor's rules still hold: the config's custom_keys exempt norms from weight decay.
    assert groups['backbone.stages.1.layers.0.norm1.weight']['weight_decay'] == 0.
    assert stem['weight_decay'] == optim_cfg.optimizer.weight_decay


def test_lavit_constructor_multiplies_the_lr_mult_of_custom_keys():
    config = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
    cfg = Config.fromfile(str(REPO / config))
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    cfg.optim_wrapper.constructor = 'mmlavit.LayerDecayOptimWrapperConstructor'
    cfg.optim_wrapper.paramwise_cfg = dict(layer_decay_rate=RATE,
                                           custom_keys={'stages.3.layers.1.': dict(lr_mult=4.)})
    groups = rates_by_name(model, build_optim_wrapper(model, cfg.optim_wrapper))
    lr = cfg.optim_wrapper.optimizer.lr
    assert groups['backbone.stages.3.layers.1.ffn.fc1.weight']['lr'] == pytest.approx(lr * 4 * RATE)
    assert groups['backbone.stages.3.layers.0.ffn.fc1.weight']['lr'] == pytest.approx(lr * RATE**2)


def test_mmpretrain_constructor_decays_the_rates_of_a_lavit_classifier():
    config = 'configs/demo/lavit_t_shapes_imagenet.py'
    model, optim_cfg, optim_wrapper = build(config, 'LearningRateDecayOptimWrapperConstructor')
    groups = check_decayed_rates(model, optim_wrapper, optim_cfg.optimizer.lr)
    assert groups['head.fc.weight']['lr'] == optim_cfg.optimizer.lr


def test_a_backbone_without_layer_depths_is_named():
    init_default_scope('mmdet')
    detector = nn.Module()
    detector.backbone = MODELS.build(dict(type='ResNet', depth=18))
    with pytest.raises(TypeError, match='ResNet has none. Use such a backbone'):
        layer_depth_function(detector)
