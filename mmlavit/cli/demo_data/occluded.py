"""Overlapping shapes on textured backgrounds, annotated by what stays visible: a harder COCO-format set.

Each image holds one to four ellipses, triangles and stars of random size,
aspect, rotation and colour, painted back to front over random stripes,
checks or smooth noise, so that later shapes occlude earlier ones. An
instance's annotation is its visible region (an exact RLE mask, its pixel
area and bbox); a shape left with under :data:`MIN_VISIBLE_FRACTION` of its
area or under :data:`MIN_VISIBLE_PIXELS` pixels is not annotated.
"""
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from .coco import Sample, mask_annotation, write_coco

OCCLUDED_SHAPE_CLASSES = ('ellipse', 'triangle', 'star')
MIN_VISIBLE_FRACTION = 0.15
MIN_VISIBLE_PIXELS = 16
STAR_INNER_RADIUS = 0.45

#: A shape to paint: (label, (M, 2) int32 outline, BGR colour).
Shape = Tuple[int, np.ndarray, Tuple[int, int, int]]
#: A painted shape: (label, full mask, visible mask), uint8 masks of 0 and 1.
Painted = Tuple[int, np.ndarray, np.ndarray]


def stripes(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Parallel stripes of a random period (4 to 24 px) and direction, 0 or 1."""
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period
    return (phase % 1 < 0.5).astype(np.float32)


def checks(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A checkerboard of a random cell size (4 to 20 px) and rotation, 0 or 1."""
    angle, cell = rng.uniform(0, np.pi / 2), rng.uniform(4, 20)
    u = (x * np.cos(angle) + y * np.sin(angle)) / cell
    v = (y * np.cos(angle) - x * np.sin(angle)) / cell
    return ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)


def noise(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth noise in [0, 1]: a random grid of 4 to 32 cells a side, upsampled."""
    cells = int(rng.integers(4, 33))
    grid = rng.random((cells, cells), dtype=np.float32)
    return cv2.resize(grid, x.shape[::-1], interpolation=cv2.INTER_CUBIC).clip(0, 1)


TEXTURES = (stripes, checks, noise)


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """One of :data:`TEXTURES` between two random colours, with mild noise, uint8 (size, size, 3)."""
    y, x = np.mgrid[:size, :size].astype(np.float32)
    pattern = TEXTURES[rng.integers(len(TEXTURES))](rng, x, y)
    low, high = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    canvas = low + pattern[..., None] * (high - low)
    canvas += rng.normal(0, 6, size=canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def shape_outline(label: int, centre: Sequence[float], radii: Sequence[float], angle: float) -> np.ndarray:
    """The outline of an ellipse, triangle or star as an (M, 2) int32 polygon.

    The unit shape (a circle, an equilateral triangle or a five-pointed star
    of outer radius 1) is stretched by ``radii`` along x and y, rotated by
    ``angle`` and moved to ``centre``.
    """
    if label == 0:
        turns, radius = np.arange(48) / 48, np.ones(48)
    elif label == 1:
        turns, radius = np.arange(3) / 3 - 0.25, np.ones(3)
    else:
        turns, radius = np.arange(10) / 10 - 0.25, np.where(np.arange(10) % 2, STAR_INNER_RADIUS, 1.)
    unit = radius[:, None] * np.stack([np.cos(2 * np.pi * turns), np.sin(2 * np.pi * turns)], 1)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (unit * np.asarray(radii)) @ rotation.T + np.asarray(centre)
    return np.round(points).astype(np.int32)


def random_shape(rng: np.random.Generator, size: int) -> Shape:
    """A shape of a random class, size (longer radius 12% to 30% of the image), aspect, rotation and colour."""
    label = int(rng.integers(len(OCCLUDED_SHAPE_CLASSES)))
    radius = rng.uniform(0.12, 0.3) * size
    radii = (radius, radius * rng.uniform(0.5, 1.))
    centre = rng.uniform(0.15 * size, 0.85 * size, size=2)
    polygon = shape_outline(label, centre, radii, rng.uniform(0, 2 * np.pi))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    return label, polygon, colour


def paint_shapes(image: np.ndarray, shapes: Sequence[Shape]) -> List[Painted]:
    """Paints ``shapes`` onto ``image`` in order, each over the ones before it.

    Returns:
        list[tuple]: Per shape, its label, its full mask (its pixels in the
        image) and its visible mask (those no later shape covers).
    """
    painted = []
    for label, polygon, colour in shapes:
        full = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(full, [polygon], 1)
        covered = full.astype(bool)
        for _, _, visible in painted:
            visible[covered] = 0
        image[covered] = colour
        painted.append((label, full, full.copy()))
    return painted


def visible_annotations(painted: Sequence[Painted]) -> List[Tuple[int, dict]]:
    """The COCO annotation of each painted shape's visible region, for those visible enough."""
    annotations = []
    for label, full, visible in painted:
        area = int(visible.sum())
        if area >= MIN_VISIBLE_PIXELS and area >= MIN_VISIBLE_FRACTION * int(full.sum()):
            annotations.append((label, mask_annotation(visible)))
    return annotations


def draw_occluded_shapes(rng: np.random.Generator, size: int, max_objects: int) -> Tuple[np.ndarray, List[Painted]]:
    """An image of 1 to ``max_objects`` random shapes on a textured background, and its painted shapes."""
    image = textured_background(rng, size)
    shapes = [random_shape(rng, size) for _ in range(rng.integers(1, max_objects + 1))]
    return image, paint_shapes(image, shapes)


def make_coco_occluded_shapes(root: str, num_train: int = 300, num_val: int = 80, size: int = 160,
                              max_objects: int = 4, seed: int = 0) -> Tuple[str, str]:
    """Writes a COCO-format instance-segmentation set of occluding shapes under ``root``.

    Layout (as COCO 2017): ``annotations/instances_{train,val}2017.json`` and
    ``{train,val}2017/*.jpg``. Categories: ellipse, triangle, star.

    Returns:
        tuple[str, str]: The train and val annotation files.
    """
    rng = np.random.default_rng(seed)

    def draw() -> Sample:
        image, painted = draw_occluded_shapes(rng, size, max_objects)
        return image, visible_annotations(painted)

    return write_coco(root, dict(train2017=num_train, val2017=num_val), OCCLUDED_SHAPE_CLASSES, draw)
