"""The size-dependent grid operations of LaViT: padding to a multiple, pooling onto P x P cells.

Every pad (stem, 2x2 merging, attention residual) and every pooling onto the cells (key/value cells, DP loss) goes
through here, so their grids agree. Sizes are read only by tensor arithmetic or symbolic-size checks, never a branch a
tracer would freeze, so ``torch.export`` graphs (``torch.onnx.export(..., dynamo=True)`` too) are right at every size.
"""
import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import statically_known_true

from .precision import autocast_disabled


def pad_to_multiple(maps: Tensor, multiple: int, mode: str = 'constant') -> Tensor:
    """Pads an NCHW tensor at the bottom and right to a multiple of ``multiple``.

    Args:
        maps (Tensor): Shape (B, C, H, W).
        multiple (int): The height and width become multiples of it.
        mode (str): 'constant' (zeros) or 'replicate' (copies of the last row and column). Default: 'constant'.

    Returns:
        Tensor: Shape (B, C, ceil(H / m) * m, ceil(W / m) * m).
    """
    height, width = maps.shape[-2:]
    # Not -n % m: the padded size is then ceil(n / m) * m itself, so later stages' exported sizes stay short.
    pad_height = (height + multiple - 1) // multiple * multiple - height
    pad_width = (width + multiple - 1) // multiple * multiple - width
    if _known_zero(pad_height) and _known_zero(pad_width):
        return maps
    return F.pad(maps, (0, pad_width, 0, pad_height), mode=mode)


def _known_zero(size) -> bool:
    """Whether a size is certainly 0 without a guard on it.

    True for an int 0; for a symbolic size (``torch.export``) only when zero for every input, so an exported
    graph keeps a pad that is 0 at the example's size; never for a ``torch.jit.trace`` size (a tensor).
    """
    return not isinstance(size, Tensor) and statically_known_true(size == 0)


def averaging_matrix(length: int, size: int, like: Tensor) -> Tensor:
    """The (size, length) matrix that averages an axis of ``length`` onto ``size`` cells.

    Row i averages [floor(i n / P), ceil((i + 1) n / P)), the windows of ``F.adaptive_avg_pool2d``. Built with tensor
    arithmetic to follow a symbolic size. Cached for an int length (a training step pools few sizes), but not under
    torch.compile or torch.export: a cache filled while tracing would hand fake tensors to later forwards.

    Args:
        length (int): n, the axis length (an int or a symbolic size).
        size (int): P, the number of cells.
        like (Tensor): Gives the dtype and device.

    Returns:
        Tensor: Shape (P, n); each row is 1 / window length inside its window, 0 elsewhere.
    """
    if isinstance(length, int) and not torch.compiler.is_compiling():
        return _cached_averaging_matrix(length, size, like.dtype, like.device)
    return _build_averaging_matrix(length, size, like.dtype, like.device)


def _build_averaging_matrix(length, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """:func:`averaging_matrix` of a given dtype and device, built."""
    cells = torch.arange(size, device=device)
    start = cells * length // size
    end = ((cells + 1) * length + size - 1) // size
    positions = torch.arange(length, device=device)
    inside = (positions >= start[:, None]) & (positions < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


@functools.lru_cache(maxsize=256)
def _cached_averaging_matrix(length: int, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """:func:`_build_averaging_matrix` cached; never an inference tensor, so that training can reuse it."""
    with torch.inference_mode(False):
        return _build_averaging_matrix(length, size, dtype, device)


def adaptive_avg_pool(maps: Tensor, size: int) -> Tensor:
    """Averages an NCHW tensor onto a size x size grid (windows as ``F.adaptive_avg_pool2d``).

    Linear and separable: A_H X A_W^T (:func:`averaging_matrix`), reducing W, then H, by products that read the input
    without a copy: (P, W) x (W, C) per row on channels-last storage (the key/value cells), one (B C H, W) x (W, P) on
    contiguous NCHW (the DP loss). In the input's dtype even under autocast (the DP loss pools float32 probabilities).

    Args:
        maps (Tensor): Shape (B, C, H, W).
        size (int): P.

    Returns:
        Tensor: Shape (B, C, P, P), channels-last if ``maps`` is.
    """
    batch, channels, height, width = maps.shape
    rows = averaging_matrix(height, size, maps)
    cols = averaging_matrix(width, size, maps)
    with autocast_disabled(maps.device.type):
        if statically_known_true(maps.stride(1) == 1):
            tokens = maps.permute(0, 2, 3, 1).reshape(batch * height, width, channels)
            pooled = torch.bmm(cols.expand(batch * height, size, width), tokens)
            pooled = torch.bmm(rows.expand(batch, size, height), pooled.view(batch, height, size * channels))
            return pooled.view(batch, size, size, channels).permute(0, 3, 1, 2)
        pooled = torch.mm(maps.reshape(-1, width), cols.t()).view(batch * channels, height, size)
        pooled = torch.bmm(rows.expand(batch * channels, size, height), pooled)
        return pooled.view(batch, channels, size, size)
