"""The diagonality-preserving (DP) loss of LaViT's LA layers (docs/design.md, "The DP loss").

An LA layer's attention (B, heads, K, N), averaged over the queries onto the key cells, gives per head a K x K cell
attention A (:func:`cell_attention`); the loss rewards a diagonal (a cell attends most to itself), symmetric A.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .grid import adaptive_avg_pool


def cell_attention(attn: Tensor, hw: Tuple[int, int], pool_size: int) -> Tensor:
    """The square cell attention A of an attention map.

    Args:
        attn (Tensor): Attention probabilities (B, heads, K, N): K = pool_size ** 2 key cells, N = H * W queries.
        hw (tuple[int, int]): The query grid (H, W).
        pool_size (int): P, the side of the pooled key grid.

    Returns:
        Tensor: A (B, heads, K, K), A[b, h, c, j] the mean attention of cell c's queries to key cell j (rows sum to 1).
    """
    batch, heads, num_cells, _ = attn.shape
    query_cells = adaptive_avg_pool(attn.reshape(batch, heads * num_cells, *hw), pool_size)
    # (B, heads, key cell, query cell) -> rows = query cells.
    return query_cells.view(batch, heads, num_cells, num_cells).transpose(-2, -1)


def symmetry_loss(cells: Tensor) -> Tensor:
    """L_sym = mean over batch, heads and (i, j) of |A_ij - A_ji|, for A (B, heads, K, K)."""
    return (cells - cells.transpose(-2, -1)).abs().mean()


#: The forms of L_diag that :func:`diagonal_loss` computes.
DIAGONAL_FORMS = ('difference', 'log_ratio')
#: The form of L_diag the tools report, whichever form a model was trained with, so that runs compare on one scale.
REPORTED_DIAGONAL_FORM = 'difference'
#: The floor of the attention values whose logarithm the log-ratio form takes.
LOG_FLOOR = 1e-6


def diagonal_loss(cells: Tensor, form: str) -> Tensor:
    """L_diag of A, mean over batch, heads and rows i: 0 if A is uniform, < 0 if cells attend most to themselves.

    - ``'difference'``: mean_{j != i} A_ij - A_ii; -1 for the identity.
    - ``'log_ratio'``: log(mean_{j != i} A_ij / A_ii), the values floored at :data:`LOG_FLOOR` (log(1e-6) = -13.8
      for the identity). Near a uniform A it is about K times the difference form, and its gradient does not shrink
      with the rows' values (docs/design.md, "Why the log ratio").

    Args:
        cells (Tensor): A, shape (B, heads, K, K), rows summing to 1.
        form (str): ``'difference'`` or ``'log_ratio'``.

    Returns:
        Tensor: L_diag, a scalar.

    Raises:
        ValueError: Another form; the message names the accepted ones.
    """
    if form not in DIAGONAL_FORMS:
        raise ValueError(f'L_diag has the forms {DIAGONAL_FORMS}, got {form!r}: pass one of them '
                         f'(model.backbone.dp_diagonal)')
    num_cells = cells.shape[-1]
    diagonal = cells.diagonal(dim1=-2, dim2=-1)
    off_diagonal_mean = (cells.sum(dim=-1) - diagonal) / (num_cells - 1)
    if form == 'log_ratio':
        return (off_diagonal_mean.clamp_min(LOG_FLOOR).log() - diagonal.clamp_min(LOG_FLOOR).log()).mean()
    return (off_diagonal_mean - diagonal).mean()


def holds_cells(hw: Tuple[int, int], pool_size: int) -> bool:
    """Whether a query grid (H, W) holds P x P distinct cells (see :func:`layer_dp_terms`)."""
    return min(hw) >= pool_size


def layer_dp_terms(attn: Tensor, hw: Tuple[int, int], pool_size: int, diagonal_form: str) -> Optional[Tensor]:
    """L_sym and L_diag of an LA layer (its DP loss is their sum), or None where its grid is smaller than the cells.

    On a query grid smaller than P x P in either direction the pooled cells overlap: several key cells average the
    same tokens, so their scores are equal and no cell can attend to itself more than to its duplicates.

    Args:
        attn (Tensor): Attention probabilities (B, heads, K, N).
        hw (tuple[int, int]): The query grid (H, W).
        pool_size (int): P.
        diagonal_form (str): The form of L_diag (see :func:`diagonal_loss`).

    Returns:
        Tensor | None: (L_sym, L_diag), shape (2,), or None for a grid smaller than P x P.
    """
    if not holds_cells(hw, pool_size):
        return None
    cells = cell_attention(attn.float(), hw, pool_size)
    return torch.stack([symmetry_loss(cells), diagonal_loss(cells, diagonal_form)])
