"""Whole-model params and FLOPs from a config (tools/get_flops.py --config)."""
import torch
from mmengine.analysis import parameter_count

from mmlavit import LaViT
from mmlavit.cli.flops import count_flops, measure_model


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
