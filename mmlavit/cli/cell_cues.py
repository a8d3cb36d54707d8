"""How far an image's colours alone single out each token's own key cell (tools/ablate.py).

The DP loss rewards LA layers whose cell attention is diagonal: the queries of
each of the P x P key cells attending most to that cell. LaViT has no
position embedding, so a query tells its own cell from the others only by
what it sees. The own-cell colour share measures how much of that cue a data
set offers before any learning: tokens are the stem's 4x4-pixel patches (their
mean colour), the key cells the adaptive averages of the tokens onto P x P
cells (as the LA layers pool them), and the share is the fraction of tokens
whose nearest cell in colour is one whose window holds them: 1 when every
cell has a flat colour of its own, near 1 / P^2 when nothing in the colours
tells the cells apart (0.04 on 160x160 images of uniform noise).
"""
import numpy as np
import torch
import torch.nn.functional as F

from mmlavit.models.grid import adaptive_avg_pool, averaging_matrix


def own_cell_colour_share(image: np.ndarray, pool_size: int = 7, patch: int = 4) -> float:
    """The share of an image's tokens whose nearest key cell in colour holds them.

    Args:
        image (np.ndarray): Shape (H, W, 3), any colour order.
        pool_size (int): P, the side of the key cell grid. Default: 7.
        patch (int): The token size in pixels (LaViT's stem stride). Default: 4.

    Returns:
        float: In [0, 1]. A tie between cells goes to the first of them.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    tokens = F.avg_pool2d(pixels, patch)
    height, width = tokens.shape[-2:]
    cells = adaptive_avg_pool(tokens, pool_size).flatten(2)[0]
    colours = tokens.flatten(2)[0]
    nearest = torch.cdist(colours.T, cells.T).argmin(dim=1)
    rows = averaging_matrix(height, pool_size, tokens) > 0
    cols = averaging_matrix(width, pool_size, tokens) > 0
    holds = (rows[:, None, :, None] & cols[None, :, None, :]).reshape(pool_size ** 2, height * width)
    return holds[nearest, torch.arange(height * width)].float().mean().item()
