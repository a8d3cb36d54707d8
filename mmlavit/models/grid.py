"""The size-dependent grid operations of LaViT: padding to a multiple, pooling onto P x P cells.

Every place that pads a grid (the stem, the 2x2 merging between stages, the
attention residual) or averages it onto the pooled cells (the key/value cells,
the DP loss) goes through these functions, so that their grids always agree.
"""
import torch.nn.functional as F
from torch import Tensor


def pad_to_multiple(maps: Tensor, multiple: int) -> Tensor:
    """Zero-pads an NCHW tensor at the bottom and right to a multiple of ``multiple``.

    Args:
        maps (Tensor): Shape (B, C, H, W).
        multiple (int): The height and width become multiples of it.

    Returns:
        Tensor: Shape (B, C, ceil(H / m) * m, ceil(W / m) * m).
    """
    height, width = maps.shape[-2:]
    if height % multiple == 0 and width % multiple == 0:
        return maps
    return F.pad(maps, (0, -width % multiple, 0, -height % multiple))


def adaptive_avg_pool(maps: Tensor, size: int) -> Tensor:
    """Averages an NCHW tensor onto a size x size grid (windows as ``F.adaptive_avg_pool2d``).

    Cell i of an axis of length n averages [floor(i n / P), ceil((i + 1) n / P)).

    Args:
        maps (Tensor): Shape (B, C, H, W).
        size (int): P.

    Returns:
        Tensor: Shape (B, C, P, P).
    """
    return F.adaptive_avg_pool2d(maps, size)
