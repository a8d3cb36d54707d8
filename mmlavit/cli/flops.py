"""Params and FLOPs of LaViT-T/S/B beside mmdet's PVTv2-b1/b2 and Swin-T and mmseg's MiT-b1/b2, or of a config's
whole model (tools/get_flops.py).

FLOPs come from mmengine's FlopAnalyzer (fvcore's jit-traced counter: one
multiply-add counts as one FLOP). It counts convolutions, linear layers,
matmul/mm/bmm/einsum products (and baddbmm, through the handle ``import mmlavit`` adds), so
LaViT's pooling onto the key cells (two averaging-matrix products) too, norms
(mmengine's estimate: 5 per element with an affine transform) and adaptive
average pooling (1 per input element); element-wise ops, softmax and
activations are not counted and are listed. Backbone only, batch 1, eval mode.

Two counts are given: all of that, the project's count; and the same without
the attention products, the batched products whose two operands are both
computed from the image: a layer's query-key (score) product and its
attention-value product, N x K x C multiply-adds each for N queries, K keys
and C channels in the plain form. Products with a weight (projections, LaViT's
Theta and head mix, its projections folded into the cells) or a constant (the
pooling matrices) stay in both. A LaViT layer with many queries runs its
query and output projections folded into these two products (K C^2 + N h K C
instead of N C^2 + N K C, see ``PooledAttention.folds_projections``), so its
attention products also carry those projections.

A config's whole model (``--config``: backbone, neck and heads) is counted
the same way over its ``mode='tensor'`` forward on one image of the given
size: what mmdet's and mmseg's get_flops tools count (the network up to the
raw head outputs; for two-stage detectors the RoI heads on the RPN's
proposals), without post-processing.

    python tools/get_flops.py                      # 224x224, all models
    python tools/get_flops.py --shape 800 1333 --models lavit-s pvtv2-b2
"""
import argparse
import warnings
from collections import Counter
from typing import List, NamedTuple, Optional, Tuple

import torch
from mmdet.registry import MODELS
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import bmm_flop_jit, matmul_flop_jit
from mmengine.registry import init_default_scope
from mmengine.structures import BaseDataElement
from torch import nn

import mmlavit  # noqa: F401  registers LaViT
from mmlavit.models.flop_handles import baddbmm_flop_jit
from .runner import build_model, positive_int

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


#: The product ops: their FLOP handle and the positions of the two multiplied operands.
PRODUCTS = {
    'aten::matmul': (matmul_flop_jit, (0, 1)),
    'aten::mm': (matmul_flop_jit, (0, 1)),
    'aten::bmm': (bmm_flop_jit, (0, 1)),
    'aten::baddbmm': (baddbmm_flop_jit, (1, 2)),
}
#: The operator name under which the attention products are counted.
ATTENTION = 'attention'


class InputDependence:
    """Tells the values of a traced graph computed from its traced inputs from those of weights and constants.

    ``torch.jit._get_trace_graph``, which the FlopAnalyzer traces with, makes
    the traced inputs the first graph inputs and the parameters the others.
    Sizes are not followed: a weight reshaped to an input's size stays a weight.

    Args:
        num_inputs (int): How many traced inputs the graph starts with.
    """

    def __init__(self, num_inputs):
        self.num_inputs = num_inputs

    def __call__(self, value) -> bool:
        stack, seen = [value], set()
        while stack:
            value = stack.pop()
            if value.unique() in seen:
                continue
            seen.add(value.unique())
            node = value.node()
            if node.kind() == 'prim::Param':
                if value.offset() < self.num_inputs:
                    return True
                continue
            stack.extend(arg for arg in node.inputs() if holds_tensors(arg.type()))
        return False


def holds_tensors(jit_type) -> bool:
    """Whether a traced value of this type is or holds tensors (not a size or a scalar)."""
    if jit_type.kind() == 'TensorType':
        return True
    if jit_type.kind() == 'ListType':
        return holds_tensors(jit_type.getElementType())
    if jit_type.kind() == 'TupleType':
        return any(holds_tensors(element) for element in jit_type.elements())
    return False


def product_handle(handle, operands, from_inputs):
    """A FLOP handle that counts a product of two input-computed operands under :data:`ATTENTION`."""

    def count(inputs, outputs):
        flops = handle(inputs, outputs)
        if all(from_inputs(inputs[index]) for index in operands):
            return Counter({ATTENTION: flops})
        return flops

    return count


def count_flops(model, inputs):
    """A FlopAnalyzer over ``model`` that counts baddbmm and the attention products apart, its warnings off.

    Its ``total()`` is the project's count; ``by_operator()[ATTENTION]`` the
    attention products in it (see the module docstring).
    """
    analyzer = FlopAnalyzer(model, inputs)
    from_inputs = InputDependence(len(inputs))
    for op, (handle, operands) in PRODUCTS.items():
        analyzer.set_op_handle(op, product_handle(handle, operands, from_inputs))
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


class BackboneCount(NamedTuple):
    """Params and FLOPs of one backbone at one size."""
    params_m: float
    gflops: float
    #: The attention products among the GFLOPs.
    attention_gflops: float
    #: Op names without a FLOP handle.
    uncounted: List[str]


def measure(name, shape) -> BackboneCount:
    """Counts one backbone at input size ``shape`` (H, W)."""
    model = build_backbone(name)
    params = parameter_count(model)[''] / 1e6
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = count_flops(model, (torch.rand(1, 3, *shape), ))
        return BackboneCount(params, analyzer.total() / 1e9, analyzer.by_operator()[ATTENTION] / 1e9,
                             sorted(analyzer.unsupported_ops()))


class TensorForward(nn.Module):
    """A model's ``mode='tensor'`` forward on fixed data samples, as a module of the images alone."""

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model, self.data_samples = model, data_samples

    def forward(self, inputs):
        return self.model(inputs, self.data_samples, mode='tensor')


def image_data_samples(model: nn.Module, shape: Tuple[int, int]):
    """One data sample of the model's framework for an image of ``shape`` already at the network's size."""
    meta = dict(img_shape=shape, pad_shape=shape, ori_shape=shape, batch_input_shape=shape, scale_factor=(1., 1.))
    module = type(model).__module__
    if module.startswith('mmdet.'):
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=meta)]
    if module.startswith('mmseg.'):
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    return [BaseDataElement(metainfo=meta)] if module.startswith('mmpretrain.') else None


def measure_model(config: str, shape: Tuple[int, int], cfg_options: Optional[dict] = None):
    """Returns (params in M, GFLOPs) of the config's whole model at one ``shape`` (H, W) image, batch 1."""
    model = build_model(config, cfg_options=cfg_options)
    params = parameter_count(model)[''] / 1e6
    wrapper = TensorForward(model, image_data_samples(model, tuple(shape))).eval()
    with torch.no_grad():
        flops = count_flops(wrapper, (torch.rand(1, 3, *shape), )).total() / 1e9
    return params, flops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shape', type=positive_int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    parser.add_argument('--models', nargs='+', default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument('--config', help='count the whole model of this config (backbone, neck and heads) '
                                         'instead of the backbones')
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    if args.config:
        params, gflops = measure_model(args.config, shape)
        print(f'{args.config} at {shape[0]}x{shape[1]}, batch 1, mode=\'tensor\' forward (mmengine FlopAnalyzer, '
              f'multiply-add = 1 FLOP): {params:.2f}M params, {gflops:.1f} GFLOPs')
        return
    print(f'Backbone params and FLOPs at {shape[0]}x{shape[1]}, batch 1 (mmengine FlopAnalyzer, '
          'multiply-add = 1 FLOP)\n')
    print('| model | params (M) | GFLOPs | GFLOPs without attention products | attention products |')
    print('|---|---:|---:|---:|---:|')
    uncounted = set()
    for name in args.models:
        count = measure(name, shape)
        uncounted.update(count.uncounted)
        print(f'| {name} | {count.params_m:.2f} | {count.gflops:.2f} | '
              f'{count.gflops - count.attention_gflops:.2f} | {count.attention_gflops:.2f} |', flush=True)
    print('\nAttention products: the query-key and attention-value products (both operands computed from '
          'the image).')
    print(f'Not counted (no FLOP handler): {", ".join(sorted(uncounted))}')
