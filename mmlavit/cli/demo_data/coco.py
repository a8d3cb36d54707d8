"""COCO-format instance-segmentation sets: the writer the generated sets share, and the shapes set
(``make demo``, the detection tests)."""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .shapes import SHAPE_CLASSES, draw_shapes

#: An image and its instances, each a (label, annotation fields) pair; labels count from 0.
Sample = Tuple[np.ndarray, List[Tuple[int, dict]]]


def polygon_annotation(polygon: np.ndarray) -> dict:
    """The COCO annotation fields of a shape given by its (M, 2) outline: polygon, area, bbox."""
    x, y, w, h = cv2.boundingRect(polygon)
    return dict(segmentation=[polygon.astype(float).flatten().tolist()], area=float(cv2.contourArea(polygon)),
                bbox=[x, y, w, h])


def mask_annotation(mask: np.ndarray) -> dict:
    """The COCO annotation fields of a binary uint8 mask: its RLE, pixel count and bbox, all exact."""
    rle = mask_util.encode(np.asfortranarray(mask))
    x, y, w, h = cv2.boundingRect(mask)
    return dict(segmentation=dict(size=rle['size'], counts=rle['counts'].decode()), area=float(mask.sum()),
                bbox=[x, y, w, h])


def write_coco(root: str, counts: Dict[str, int], classes: Sequence[str],
               draw: Callable[[], Sample]) -> Tuple[str, ...]:
    """Writes a COCO-format instance-segmentation set under ``root``, one image per call of ``draw``.

    Layout (as COCO 2017): ``annotations/instances_{split}.json`` and ``{split}/*.jpg``.

    Args:
        root (str): The folder of the set.
        counts (dict[str, int]): The number of images of each split (e.g. ``train2017``), drawn in this order.
        classes (Sequence[str]): The category names; label ``i`` is category ``i + 1``.
        draw (Callable): Returns the next image (uint8, BGR) and its instances.

    Returns:
        tuple[str]: The annotation file of each split.
    """
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_files = []
    for split, count in counts.items():
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, instances = draw()
            height, width = image.shape[:2]
            file_name = f'{image_id:06d}.jpg'
            cv2.imwrite(osp.join(root, split, file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
            for label, fields in instances:
                annotations.append(dict(id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                                        **fields, iscrowd=0))
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=[dict(id=i + 1, name=n) for i, n in enumerate(classes)]), f)
        ann_files.append(ann_file)
    return tuple(ann_files)


def make_coco_shapes(root: str, num_train: int = 400, num_val: int = 60, size: int = 128,
                     max_objects: int = 4, seed: int = 0) -> Tuple[str, str]:
    """Writes a COCO-format instance-segmentation set of non-overlapping shapes under ``root``.

    Layout (as COCO 2017): ``annotations/instances_{train,val}2017.json`` and
    ``{train,val}2017/*.jpg``. Categories: circle, square, triangle.

    Returns:
        tuple[str, str]: The train and val annotation files.
    """
    rng = np.random.default_rng(seed)

    def draw() -> Sample:
        image, shapes = draw_shapes(rng, size, max_objects)
        return image, [(label, polygon_annotation(polygon)) for label, polygon in shapes]

    return write_coco(root, dict(train2017=num_train, val2017=num_val), SHAPE_CLASSES, draw)
