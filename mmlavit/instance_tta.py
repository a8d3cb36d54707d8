"""Instance segmentation TTA: DetTTAModel keeping the masks (not imported by ``mmlavit``: it imports mmdet.models)."""
from typing import List

import torch
from mmcv.ops import batched_nms
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor

from .registry import MODELS

#: The mask axes a flip reverses, per ``flip_direction`` (masks are (n, H, W)).
FLIP_DIMS = {'horizontal': (-1, ), 'vertical': (-2, ), 'diagonal': (-2, -1)}


def flip_masks(masks: Tensor, direction: str) -> Tensor:
    """Flips instance masks as mmdet's ``bbox_flip`` flips their boxes.

    Args:
        masks (Tensor): Masks of shape (n, H, W).
        direction (str): 'horizontal', 'vertical' or 'diagonal'.

    Returns:
        Tensor: The flipped masks, of shape (n, H, W).
    """
    if direction not in FLIP_DIMS:
        raise ValueError(f'flip_direction must be one of {sorted(FLIP_DIMS)}, not {direction!r}')
    return masks.flip(FLIP_DIMS[direction])


@MODELS.register_module()
class InstanceSegTTAModel(DetTTAModel):
    """Merges augmented instance segmentation results: boxes as DetTTAModel, and each kept box's mask.

    Boxes merge as in DetTTAModel (flipped back with ``bbox_flip`` against ``ori_shape``, ``batched_nms`` with
    ``tta_cfg.nms``, the ``tta_cfg.max_per_img`` best kept); each kept box keeps its view's mask, flipped back
    likewise. Masks must be at ``ori_shape`` (``rescale=True``, as ``test_step`` predicts) to share one shape;
    predictions without masks merge as in DetTTAModel.

    Examples:
        >>> custom_imports = dict(imports=['mmlavit', 'mmlavit.instance_tta'], allow_failed_imports=False)
        >>> tta_model = dict(type='mmlavit.InstanceSegTTAModel',
        >>>                  tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        >>> # tta_pipeline: as DetTTAModel's, e.g. mmdet's retinanet_tta.py.
    """

    def _merge_single_sample(self, data_samples: List[DetDataSample]) -> DetDataSample:
        """Merges the predictions of the views of one image into one prediction.

        Args:
            data_samples (List[DetDataSample]): The views, ``pred_instances`` with ``bboxes`` (n, 4), ``scores``,
                ``labels`` (n, ), ``masks`` (n, H, W); ``metainfo`` with ``ori_shape``, ``flip``, ``flip_direction``.

        Returns:
            DetDataSample: The first view's sample with merged ``pred_instances``: ``bboxes`` (k, 4), ``scores`` (k, ),
            ``labels`` (k, ) and ``masks`` (k, H, W), k <= ``max_per_img``, best score first.
        """
        if 'masks' not in data_samples[0].pred_instances:
            return super()._merge_single_sample(data_samples)
        views = [data_sample.pred_instances for data_sample in data_samples]
        merged_bboxes, merged_scores = self.merge_aug_bboxes([view.bboxes for view in views],
                                                             [view.scores for view in views],
                                                             [data_sample.metainfo for data_sample in data_samples])
        merged_labels = torch.cat([view.labels for view in views])
        if merged_bboxes.numel() == 0:
            return data_samples[0]

        det_bboxes, keep_idxs = batched_nms(merged_bboxes, merged_scores, merged_labels, self.tta_cfg.nms)
        keep_idxs = keep_idxs[:self.tta_cfg.max_per_img]
        det_bboxes = det_bboxes[:self.tta_cfg.max_per_img]

        results = InstanceData()
        results.bboxes = det_bboxes[:, :-1].clone()
        results.scores = det_bboxes[:, -1].clone()
        results.labels = merged_labels[keep_idxs]
        # Every view's masks flipped back, in the order of the merged boxes, which keep_idxs indexes.
        masks = torch.cat([flip_masks(view.masks, sample.flip_direction) if sample.flip else view.masks
                           for view, sample in zip(views, data_samples)])
        results.masks = masks[keep_idxs]
        merged = data_samples[0]
        merged.pred_instances = results
        return merged
