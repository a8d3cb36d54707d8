"""Params and FLOPs of LaViT-T/S/B beside mmdet's PVTv2-b1/b2 and Swin-T and mmseg's MiT-b1/b2 (tools/get_flops.py).

FLOPs come from mmengine's FlopAnalyzer (fvcore's jit-traced counter: one
multiply-add counts as one FLOP; matmul/bmm/baddbmm/einsum, so the attention
products and LaViT's pooling onto the key cells (two averaging-matrix
products), and convolutions and linear layers are counted; element-wise ops,
norms, softmax and the peers' pooling are not and are listed). Backbone only,
batch 1, eval mode.

    python tools/get_flops.py                      # 224x224, all models
    python tools/get_flops.py --shape 800 1333 --models lavit-s pvtv2-b2
"""
import argparse
import warnings

import torch
from mmdet.registry import MODELS
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import bmm_flop_jit
from mmengine.registry import init_default_scope

import mmlavit  # noqa: F401  registers LaViT

BACKBONES = {
    'lavit-t': dict(type='mmlavit.LaViT', arch='t'),
    'lavit-s': dict(type='mmlavit.LaViT', arch='s'),
    'lavit-b': dict(type='mmlavit.LaViT', arch='b'),
    # mmdet's configs/pvt/retinanet_pvtv2-b1_fpn_1x_coco.py and -b2_ (PVTv2 defaults otherwise).
    'pvtv2-b1': dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=64, num_layers=[2, 2, 2, 2]),
    'pvtv2-b2': dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=64, num_layers=[3, 4, 6, 3]),
    # mmdet's configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py.
    'swin-t': dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
                   num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4, qkv_bias=True),
    # mmseg's configs/segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py and -b2_ (and their base).
    'mit-b1': dict(type='mmseg.MixVisionTransformer', embed_dims=64, num_heads=[1, 2, 5, 8],
                   num_layers=[2, 2, 2, 2], drop_path_rate=0.1),
    'mit-b2': dict(type='mmseg.MixVisionTransformer', embed_dims=64, num_heads=[1, 2, 5, 8],
                   num_layers=[3, 4, 6, 3], drop_path_rate=0.1),
}


def build_backbone(backbone, scope=None):
    """A backbone in eval mode: a name of :data:`BACKBONES` or a backbone dict, built in registry ``scope``."""
    if scope is not None:
        init_default_scope(scope)
    model = MODELS.build(BACKBONES[backbone] if isinstance(backbone, str) else dict(backbone))
    model.eval()  # not chained: mmdet's Swin.train() returns None
    return model


def baddbmm_flop_jit(inputs, outputs):
    """baddbmm(bias, batch1, batch2): the batch1 @ batch2 product, counted as bmm counts it.

    mmengine has no handle for it, and LaViT's attention runs its products as
    baddbmm (bias fused): uncounted, they would vanish from the total.
    """
    return bmm_flop_jit(inputs[1:3], outputs)


def count_flops(model, inputs):
    """A FlopAnalyzer over ``model`` that also counts baddbmm, its warnings off."""
    analyzer = FlopAnalyzer(model, inputs).set_op_handle('aten::baddbmm', baddbmm_flop_jit)
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def measure(name, shape):
    """Returns (params in M, GFLOPs, uncounted op names) of one backbone."""
    model = build_backbone(name)
    params = parameter_count(model)[''] / 1e6
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = count_flops(model, (torch.rand(1, 3, *shape), ))
        flops = analyzer.total() / 1e9
        uncounted = sorted(analyzer.unsupported_ops())
    return params, flops, uncounted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    parser.add_argument('--models', nargs='+', default=list(BACKBONES), choices=list(BACKBONES))
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    print(f'Backbone params and FLOPs at {shape[0]}x{shape[1]}, batch 1 (mmengine FlopAnalyzer, '
          'multiply-add = 1 FLOP)\n')
    print('| model | params (M) | GFLOPs |')
    print('|---|---:|---:|')
    uncounted = set()
    for name in args.models:
        params, flops, ops = measure(name, shape)
        uncounted.update(ops)
        print(f'| {name} | {params:.2f} | {flops:.2f} |', flush=True)
    print(f'\nNot counted (no FLOP handler): {", ".join(sorted(uncounted))}')
