"""Coloured shapes on smooth backgrounds: the drawing behind every generated demo dataset."""
import cv2
import numpy as np

SHAPE_CLASSES = ('circle', 'square', 'triangle')


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour gradient with mild noise, uint8 (size, size, 3)."""
    corners = rng.uniform(40, 215, size=(2, 2, 3)).astype(np.float32)
    canvas = cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)
    canvas += rng.normal(0, 6, size=canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def shape_polygon(rng: np.random.Generator, label: int, centre, radius) -> np.ndarray:
    """The outline of a shape as an (M, 2) int32 polygon."""
    angle = rng.uniform(0, 2 * np.pi)
    sides = {0: 32, 1: 4, 2: 3}[label]
    angles = angle + np.arange(sides) * 2 * np.pi / sides
    points = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1)
    return np.round(points).astype(np.int32)


def draw_shapes(rng: np.random.Generator, size: int, max_objects: int):
    """An image and its shapes: a list of (label, polygon), painted back to front."""
    image = background(rng, size)
    shapes, placed = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            radius = rng.uniform(0.1, 0.22) * size
            centre = rng.uniform(radius, size - radius, size=2)
            if all(np.hypot(*(centre - c)) > radius + r for c, r in placed):
                break
        else:
            continue
        placed.append((centre, radius))
        label = int(rng.integers(len(SHAPE_CLASSES)))
        polygon = shape_polygon(rng, label, centre, radius)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.fillPoly(image, [polygon], colour)
        shapes.append((label, polygon))
    return image, shapes
