"""Whole-model params and FLOPs from a config (tools/get_flops.py --config), and the frameworks' own counter."""
from functools import partial

import pytest
import torch
from mmengine.analysis import get_model_complexity_info, parameter_count

from mmlavit import LaViT
from mmlavit.cli.flops import count_flops, image_data_samples, measure_model
from mmlavit.cli.runner import build_model


def test_classifier_counts_backbone_pooling_and_head():
    """LaViT-T ImageNet classifier = the backbone + the 512 -> 1000 linear head (512 000 multiply-adds)."""
    params, gflops = measure_model('configs/lavit-t_16xb64_in1k.py', (224, 224))
    backbone = LaViT(arch='t', out_indices=(3, )).eval()
    with torch.no_grad():
        backbone_flops = count_flops(backbone, (torch.rand(1, 3, 224, 224), )).total()
    head_params = 512 * 1000 + 1000
    assert abs(params * 1e6 - (parameter_count(backbone)[''] + head_params)) < 1
    assert abs(gflops * 1e9 - (backbone_flops + 512 * 1000)) < 1e-3 * backbone_flops


def test_segmentor_is_counted_with_its_heads():
    params, gflops = measure_model('configs/demo/upernet_lavit_t_shapes_ade.py', (96, 96))
    backbone = LaViT(arch='t').eval()
    with torch.no_grad():
        backbone_flops = count_flops(backbone, (torch.rand(1, 3, 96, 96), )).total()
    assert params * 1e6 > parameter_count(backbone)['']
    assert gflops * 1e9 > 1.5 * backbone_flops  # UperNet's PPM and FPN convolutions on top


@pytest.mark.slow
@pytest.mark.parametrize('config,shape', [('configs/mask-rcnn_lavit-t_fpn_1x_coco.py', (800, 1333)),
                                          ('configs/upernet_lavit-t_8xb2-160k_ade20k-512x512.py', (512, 512))])
def test_frameworks_counter_counts_lavit_whole(config, shape):
    """mmengine's get_model_complexity_info, what mmdet's and mmseg's get_flops tools call (the model's forward
    bound to its data samples, as mmdet's tool binds them), counts what tools/get_flops.py --config counts: LaViT's
    attention products (torch.baddbmm) included. Without them it undercounts UperNet, whose heads dwarf the backbone,
    by less than 1%, so the bound here is 0.1%."""
    _, ours = measure_model(config, shape)
    model = build_model(config).eval()
    model.forward = partial(model.forward, data_samples=image_data_samples(model, shape), mode='tensor')
    with torch.no_grad():
        theirs = get_model_complexity_info(model, None, torch.rand(1, 3, *shape), show_table=False,
                                           show_arch=False)['flops'] / 1e9
    assert abs(theirs - ours) <= 1e-3 * ours
