"""Small, deterministic datasets of coloured shapes, generated without any download.

They exist for the demos (``make demo``, ``make demo-seg``), the ablation
(``tools/ablate.py``) and the tests, in the on-disk formats of the real
datasets.
"""
from .ade import ADE_SHAPES_CLASSES, make_ade_shapes
from .coco import make_coco_shapes
from .imagenet import make_imagenet_shapes
from .occluded import OCCLUDED_SHAPE_CLASSES, draw_occluded_shapes, make_coco_occluded_shapes
from .shapes import SHAPE_CLASSES, draw_shapes

__all__ = ['ADE_SHAPES_CLASSES', 'OCCLUDED_SHAPE_CLASSES', 'SHAPE_CLASSES', 'draw_occluded_shapes', 'draw_shapes',
           'make_ade_shapes', 'make_coco_occluded_shapes', 'make_coco_shapes', 'make_imagenet_shapes']
