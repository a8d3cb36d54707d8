"""Params and FLOPs of a whole model built from a config: backbone, neck and heads (tools/get_flops.py --config).

Counted as :mod:`mmlavit.cli.flops` counts backbones (mmengine's FlopAnalyzer,
one multiply-add = one FLOP, the attention products included) over the
model's ``mode='tensor'`` forward on one image of the given size: what mmdet's
and mmseg's get_flops tools count (the network up to the raw head outputs;
for two-stage detectors the RoI heads on the RPN's proposals), without
post-processing.
"""
from typing import Optional, Tuple

import torch
from mmengine.analysis import parameter_count
from mmengine.structures import BaseDataElement
from torch import nn

from .flops import count_flops
from .runner import build_model


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
