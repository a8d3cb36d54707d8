"""A semantic-segmentation set of shapes in the ADE20K layout (``make demo-seg``, the segmentation tests)."""
import os
import os.path as osp

import cv2
import numpy as np

from .shapes import SHAPE_CLASSES, draw_shapes

#: The classes of the set; annotation ``i + 1`` is class ``i`` (0 is "other").
ADE_SHAPES_CLASSES = ('background', ) + SHAPE_CLASSES
#: The folders of ADEChallengeData2016's splits and the split names in its file names.
ADE_SPLITS = {'training': 'train', 'validation': 'val'}


def shapes_label_map(shapes, size: int) -> np.ndarray:
    """The annotation of drawn shapes as ADE20K labels its images.

    1 (background) around the shapes, ``label + 2`` inside a shape and 0
    ("other", unlabelled) on the one-pixel outline of each shape, where the
    JPEG image blends shape and background.
    """
    label_map = np.ones((size, size), np.uint8)
    for label, polygon in shapes:
        cv2.fillPoly(label_map, [polygon], label + 2)
        cv2.polylines(label_map, [polygon], isClosed=True, color=0, thickness=1)
    return label_map


def make_ade_shapes(root: str, num_train: int = 200, num_val: int = 40, size: int = 120,
                    max_objects: int = 4, seed: int = 0) -> str:
    """Writes a semantic-segmentation set of shapes under ``root``, laid out as ADEChallengeData2016.

    Layout: ``images/{training,validation}/*.jpg`` and
    ``annotations/{training,validation}/*.png``. As in ADE20K, annotation 0
    is "other" (ignored with ``reduce_zero_label=True``; here the outlines of
    the shapes) and the classes :data:`ADE_SHAPES_CLASSES` (background,
    circle, square, triangle) are 1, 2, 3, 4.

    Args:
        root (str): The folder to write (the ``data_root`` of the dataset).
        num_train (int): Training images. Default: 200.
        num_val (int): Validation images. Default: 40.
        size (int): Side of the square images. Default: 120.
        max_objects (int): At most this many shapes per image. Default: 4.
        seed (int): Seed of the generator; the same seed writes the same set.
            Default: 0.

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)
    for (split, file_split), count in zip(ADE_SPLITS.items(), (num_train, num_val)):
        image_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index in range(1, count + 1):
            image, shapes = draw_shapes(rng, size, max_objects)
            name = f'ADE_{file_split}_{index:08d}'
            cv2.imwrite(osp.join(image_dir, name + '.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), shapes_label_map(shapes, size))
    return root
