"""A COCO-format instance-segmentation set of shapes (``make demo``, the detection tests)."""
import json
import os
import os.path as osp
from typing import Tuple

import cv2
import numpy as np

from .shapes import SHAPE_CLASSES, draw_shapes


def make_coco_shapes(root: str, num_train: int = 400, num_val: int = 60, size: int = 128,
                     max_objects: int = 4, seed: int = 0) -> Tuple[str, str]:
    """Writes a COCO-format instance-segmentation set under ``root``.

    Layout (as COCO 2017): ``annotations/instances_{train,val}2017.json`` and
    ``{train,val}2017/*.jpg``. Categories: circle, square, triangle.

    Returns:
        tuple[str, str]: The train and val annotation files.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_files = []
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, shapes = draw_shapes(rng, size, max_objects)
            file_name = f'{image_id:06d}.jpg'
            cv2.imwrite(osp.join(root, split, file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name, height=size, width=size))
            for label, polygon in shapes:
                x, y, w, h = cv2.boundingRect(polygon)
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                    segmentation=[polygon.astype(float).flatten().tolist()],
                    area=float(cv2.contourArea(polygon)), bbox=[x, y, w, h], iscrowd=0))
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=[dict(id=i + 1, name=n) for i, n in enumerate(SHAPE_CLASSES)]), f)
        ann_files.append(ann_file)
    return tuple(ann_files)
