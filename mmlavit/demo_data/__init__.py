"""Small, deterministic datasets of coloured shapes, generated without any download.

They exist for the demos (``make demo``, ``make demo-seg``) and the tests, in
the on-disk formats of the real datasets.
"""
from .coco import make_coco_shapes
from .shapes import SHAPE_CLASSES, draw_shapes

__all__ = ['SHAPE_CLASSES', 'draw_shapes', 'make_coco_shapes']
