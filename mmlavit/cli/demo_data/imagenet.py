"""An image-classification set of shapes in the ImageNet folder layout (the pretraining demo and tests)."""
import os
import os.path as osp

import cv2
import numpy as np

from .shapes import SHAPE_CLASSES, draw_shapes


def make_imagenet_shapes(root: str, num_train: int = 60, num_val: int = 15, size: int = 72,
                         seed: int = 0) -> str:
    """Writes a classification set under ``root`` in the layout mmpretrain's ``ImageNet`` reads.

    Layout: ``{train,val}/<class>/*.JPEG`` with the classes circle, square,
    triangle (sorted folder names, so class indices follow
    :data:`SHAPE_CLASSES`). Each image shows one shape, whose class is the
    image's label.

    Args:
        root (str): The folder to write (the ``data_root`` of the dataset).
        num_train (int): Training images per class. Default: 60.
        num_val (int): Validation images per class. Default: 15.
        size (int): Side of the square images. Default: 72.
        seed (int): Seed of the generator; the same seed writes the same set.
            Default: 0.

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        for name in SHAPE_CLASSES:
            os.makedirs(osp.join(root, split, name), exist_ok=True)
        written = {name: 0 for name in SHAPE_CLASSES}
        while min(written.values()) < count:
            image, [(label, _)] = draw_shapes(rng, size, max_objects=1)
            name = SHAPE_CLASSES[label]
            if written[name] < count:
                written[name] += 1
                path = osp.join(root, split, name, f'{split}_{name}_{written[name]:05d}.JPEG')
                cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root
