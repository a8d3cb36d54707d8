"""The diagonality-preserving loss (DESIGN.md Section 4)."""
import torch.nn.functional as F
from torch import Tensor


def pool_attention_to_cells(attn: Tensor, hw: tuple, pool_size: int) -> Tensor:
    """Pools the query axis of an attention map onto the pooled key cells.

    Args:
        attn (Tensor): Attention probabilities in the backbone's score layout,
            shape (B, heads, K, N), K = pool_size ** 2, N = H * W.
        hw (tuple[int, int]): The query grid (H, W).
        pool_size (int): P, the side of the pooled key grid.

    Returns:
        Tensor: Shape (B, heads, K, K). Entry [b, h, j, c] is how much the
        queries of cell c attend to key cell j, i.e. the transpose of the
        square matrix A of DESIGN.md (rows = query cells).
    """
    batch, heads, num_cells, _ = attn.shape
    cells = F.adaptive_avg_pool2d(attn.reshape(batch, heads * num_cells, *hw), pool_size)
    return cells.view(batch, heads, num_cells, num_cells)


def symmetry_loss(cell_attn_t: Tensor) -> Tensor:
    """L_sym: the mean of |A_ij - A_ji| over batch, heads and cell pairs.

    Args:
        cell_attn_t (Tensor): Shape (B, heads, K, K), the (transposed) square
            cell attention of :func:`pool_attention_to_cells`; the measure is
            the same for A and its transpose.
    """
    return (cell_attn_t - cell_attn_t.transpose(-2, -1)).abs().mean()


def diagonal_loss(cell_attn_t: Tensor) -> Tensor:
    """L_diag: the mean over rows i of (mean_{j != i} A_ij - A_ii).

    Negative when each cell attends more to itself than to the others.

    Args:
        cell_attn_t (Tensor): Shape (B, heads, K, K), the transpose of A
            (see :func:`pool_attention_to_cells`).
    """
    num_cells = cell_attn_t.shape[-1]
    diagonal = cell_attn_t.diagonal(dim1=-2, dim2=-1)
    # Row i of A is column i of its transpose: sum over the key axis (dim -2).
    off_diagonal_mean = (cell_attn_t.sum(dim=-2) - diagonal) / (num_cells - 1)
    return (off_diagonal_mean - diagonal).mean()


def layer_dp_loss(attn: Tensor, hw: tuple, pool_size: int) -> Tensor:
    """L_sym + L_diag of an LA layer, from its attention probabilities (B, heads, K, N)."""
    cell_attn_t = pool_attention_to_cells(attn.float(), hw, pool_size)
    return symmetry_loss(cell_attn_t) + diagonal_loss(cell_attn_t)
