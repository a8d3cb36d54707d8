"""Attention blocks of LaViT (docs/design.md: the pooled key grid, VA and LA layers, the attention residual).

Scores are kept as (B, heads, K, N), K key cells by N queries, so the LA transforms, the softmax over the keys and the
attention residual need no permute. Under autocast the pre-softmax scores stay in the parameters' precision (float32):
a VA product is cast back; the attention residual, Theta and Psi run with autocast off. Over a chain of LA layers
Theta can grow them past float16's range, turning the softmax into NaNs; its output is autocast for the value product.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from .grid import adaptive_avg_pool, pad_to_multiple
from .precision import autocast_disabled


def per_head_depthwise_conv(scores: Tensor, weight: Tensor, hw: Tuple[int, int],
                            stride: int = 1, padding: int = 0) -> Tensor:
    """Convolves every (head, key cell) score map over the query grid.

    Views scores (B, heads, K, N) as (B, heads * K, H, W) and applies one filter per head, shared by the K key
    cells, as a grouped convolution. A stride first pads the grid at the bottom and right to a multiple of it,
    as the token downsampling pads (so the grids match), but with copies of the last row and column: zeros
    would pull the border scores towards 0, copies keep a constant score map constant at every size.

    Args:
        scores (Tensor): Shape (B, heads, K, H * W).
        weight (Tensor): Per-head filters, shape (heads, 1, k, k).
        hw (tuple[int, int]): The query grid (H, W).
        stride (int): Convolution stride. Default: 1.
        padding (int): Zero padding of the stride-1 convolution. Default: 0.

    Returns:
        tuple[Tensor, tuple[int, int]]: Scores (B, heads, K, H' * W') and the new grid (H', W').
    """
    batch, heads, num_cells, _ = scores.shape
    heads, num_cells = int(heads), int(num_cells)  # static also where TorchScript's ONNX tracer records sizes
    maps = scores.reshape(batch, heads * num_cells, *hw)
    if stride > 1:
        maps = pad_to_multiple(maps, stride, mode='replicate')
    filters = weight.repeat_interleave(num_cells, dim=0)
    maps = F.conv2d(maps, filters, stride=stride, padding=padding, groups=heads * num_cells)
    return maps.flatten(2).view(batch, heads, num_cells, -1), tuple(maps.shape[-2:])


class PooledCells(BaseModule):
    """Pools tokens onto the P x P key/value cells: adaptive average pool, Linear, norm, act (PVTv2's linear SRA).

    Args:
        embed_dims (int): Channels C.
        pool_size (int): P.
        norm_cfg (dict): Config of the norm. Default: dict(type='LN').
        act_cfg (dict): Config of the activation. Default: dict(type='GELU').
        init_cfg (dict, optional): Initialization config. Default: None.

    Shapes:
        x (B, H, W, C) -> cells (B, P * P, C).
    """

    def __init__(self, embed_dims, pool_size, norm_cfg=dict(type='LN'), act_cfg=dict(type='GELU'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.pool_size = pool_size
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        # The NCHW view of channels-last tokens pools without a copy.
        cells = adaptive_avg_pool(x.permute(0, 3, 1, 2), self.pool_size)
        cells = cells.permute(0, 2, 3, 1).flatten(1, 2)
        return self.act(self.norm(self.proj(cells)))


class PooledAttention(BaseModule):
    """What VA and LA layers share: pooled cells, values, softmax, output projection.

    Args:
        embed_dims (int): Channels C.
        num_heads (int): Heads h; C must be divisible by h.
        pool_size (int): P, the side of the pooled key grid (K = P * P).
        qkv_bias (bool): Bias of the cells' key and value (and a VA layer's query) projections. Default: True.
        attn_drop_rate (float): Dropout on the attention probabilities. Default: 0.
        proj_drop_rate (float): Dropout after the output projection. Default: 0.
        norm_cfg (dict): Norm of the pooled cells. Default: dict(type='LN').
        act_cfg (dict): Activation of the pooled cells. Default: dict(type='GELU').
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    #: The projection of the pooled cells: values only (LA) or keys and values (VA).
    cell_projections = 1

    def __init__(self, embed_dims, num_heads, pool_size, qkv_bias=True, attn_drop_rate=0., proj_drop_rate=0.,
                 norm_cfg=dict(type='LN'), act_cfg=dict(type='GELU'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.pool_size = pool_size
        self.num_cells = pool_size ** 2
        self.cells = PooledCells(embed_dims, pool_size, norm_cfg, act_cfg)
        self.cell_proj = nn.Linear(embed_dims, embed_dims * self.cell_projections, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def project_cells(self, x: Tensor) -> Tensor:
        """Pools x (B, H, W, C) and projects it to (projections, B, heads, K, head_dims)."""
        cells = self.cell_proj(self.cells(x))
        batch, num_cells, _ = cells.shape
        return cells.view(batch, num_cells, self.cell_projections, self.num_heads,
                          self.head_dims).permute(2, 0, 3, 1, 4)

    def folds_projections(self, num_queries: int) -> bool:
        """Whether the token-side projections are cheaper folded into the K cells (same output up to rounding).

        Folded (per head K_h W_h, then one product of the N tokens with h K rows of C), a C x C projection costs
        K C^2 + N h K C multiply-adds instead of N C^2 + N K C: fewer whenever N (C - (h - 1) K) > K C.
        """
        spare = self.embed_dims - (self.num_heads - 1) * self.num_cells
        return num_queries * spare > self.num_cells * self.embed_dims

    def attend(self, scores: Tensor, value: Tensor, hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        """Softmax over the keys, aggregation of the values, output projection.

        Args:
            scores (Tensor): Pre-softmax scores (B, heads, K, N).
            value (Tensor): Values (B, heads, K, head_dims).
            hw (tuple[int, int]): The query grid (H, W).

        Returns:
            tuple[Tensor, Tensor]: Output tokens (B, H, W, C) and attention probabilities (B, heads, K, N).
        """
        attn = scores.softmax(dim=-2)
        batch, heads, num_cells, num_queries = attn.shape
        kept = self.attn_drop(attn)
        if self.folds_projections(num_queries):
            # proj(concat_h P_h^T V_h) = sum_h P_h^T (V_h W_h^T) + b: one product, no (B, h, N, d) intermediate.
            proj_weight = self.proj.weight.view(self.embed_dims, heads, self.head_dims).permute(1, 2, 0)
            value = torch.matmul(value, proj_weight).view(batch, heads * num_cells, self.embed_dims)
            kept = kept.view(batch, heads * num_cells, num_queries).transpose(1, 2)
            out = torch.baddbmm(self.proj.bias, kept, value)
        else:
            out = torch.matmul(kept.transpose(-2, -1), value)
            out = self.proj(out.transpose(1, 2).reshape(batch, num_queries, self.embed_dims))
        return self.proj_drop(out.view(batch, *hw, self.embed_dims)), attn


class VanillaAttention(PooledAttention):
    """A VA layer's attention: queries from all tokens, keys and values from the pooled cells.

    S = K Q^T / sqrt(d), plus the attention residual as an additive bias if given. Args as :class:`PooledAttention`.

    Shapes:
        x (B, H, W, C), bias (B, heads, K, N) or None -> out (B, H, W, C), scores and attn (B, heads, K, N).
    """

    cell_projections = 2

    def __init__(self, embed_dims, num_heads, pool_size, qkv_bias=True, **kwargs):
        super().__init__(embed_dims, num_heads, pool_size, qkv_bias, **kwargs)
        self.query = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.scale = self.head_dims ** -0.5
        self._register_load_state_dict_pre_hook(self._zero_query_bias_of_old_checkpoints)

    def _zero_query_bias_of_old_checkpoints(self, state_dict, prefix, *args):
        """Old ``qkv_bias=False`` checkpoints (key/value biases, no query bias) get a zero query bias: same outputs."""
        if (self.query.bias is not None and prefix + 'query.bias' not in state_dict
                and prefix + 'cell_proj.bias' in state_dict):
            state_dict[prefix + 'query.bias'] = torch.zeros_like(self.query.bias)

    def forward(self, x: Tensor, bias: Optional[Tensor] = None):
        batch, height, width, channels = x.shape
        num_queries = height * width
        key, value = self.project_cells(x)
        key = key * self.scale
        tokens = x.reshape(batch, num_queries, channels)
        if self.folds_projections(num_queries):
            # K_h (x W_h^T + b_h)^T = (K_h W_h) x^T + K_h b_h: one (h K, C) x (C, N) product into (B, h, K, N).
            query_weight = self.query.weight.view(self.num_heads, self.head_dims, channels)
            folded_key = torch.matmul(key, query_weight).view(batch, -1, channels)
            if self.query.bias is None:
                scores = torch.bmm(folded_key, tokens.transpose(1, 2))
            else:
                offset = torch.matmul(key, self.query.bias.view(self.num_heads, self.head_dims, 1))
                scores = torch.baddbmm(offset.view(batch, -1, 1), folded_key, tokens.transpose(1, 2))
            scores = scores.view(batch, self.num_heads, -1, num_queries)
        else:
            query = self.query(tokens).view(batch, num_queries, self.num_heads, self.head_dims)
            scores = torch.matmul(key, query.permute(0, 2, 3, 1))
        scores = scores.to(self.query.weight.dtype)
        if bias is not None:
            scores = scores + bias
        out, attn = self.attend(scores, value, (height, width))
        return out, scores, attn


class LessAttention(PooledAttention):
    """An LA layer's attention: reuses the previous scores; only values are projected.

    S = Psi(Theta(S')^T)^T: Theta, a learned K x K map over the keys shared by the heads; Psi, a per-head
    depthwise k x k convolution over the query grid shared by the K cells (a translation-invariant N x N map).

    Args:
        la_kernel (int): k, the odd kernel size of Psi. Default: 3.
        Others as :class:`PooledAttention`.

    Shapes:
        x (B, H, W, C), prev_scores (B, heads, K, N) -> out (B, H, W, C), scores and attn (B, heads, K, N).
    """

    def __init__(self, embed_dims, num_heads, pool_size, la_kernel=3, qkv_bias=True, **kwargs):
        super().__init__(embed_dims, num_heads, pool_size, qkv_bias, **kwargs)
        if la_kernel % 2 != 1:
            raise ValueError(f'la_kernel must be odd so that Psi is centred, got {la_kernel}')
        self.theta_weight = nn.Parameter(torch.empty(self.num_cells, self.num_cells))
        self.theta_bias = nn.Parameter(torch.empty(self.num_cells))
        self.psi_weight = nn.Parameter(torch.empty(num_heads, 1, la_kernel, la_kernel))
        self.init_identity()

    def init_identity(self):
        """Theta = identity, Psi = centred delta: a new LA layer reproduces the previous scores exactly."""
        centre = self.psi_weight.shape[-1] // 2
        with torch.no_grad():
            self.theta_weight.copy_(torch.eye(self.theta_weight.shape[0]))
            self.theta_bias.zero_()
            self.psi_weight.zero_()
            self.psi_weight[..., centre, centre] = 1.

    def transform_scores(self, prev_scores: Tensor, hw: Tuple[int, int]) -> Tensor:
        """Theta over the key axis, then Psi over the query grid, (B, heads, K, N) -> same."""
        batch, heads, num_cells, num_queries = prev_scores.shape
        prev = prev_scores.reshape(batch * heads, num_cells, num_queries).to(self.theta_weight.dtype)
        with autocast_disabled(prev_scores.device.type):
            # Batched with the bias fused: a 2-D matmul would read a transposed copy and add the bias in another pass.
            scores = torch.baddbmm(self.theta_bias[:, None], self.theta_weight.expand(batch * heads, -1, -1), prev)
            return per_head_depthwise_conv(scores.view_as(prev_scores), self.psi_weight, hw,
                                           padding=self.psi_weight.shape[-1] // 2)[0]

    def forward(self, x: Tensor, prev_scores: Tensor):
        hw = x.shape[1:3]
        value = self.project_cells(x)[0]
        scores = self.transform_scores(prev_scores, hw)
        out, attn = self.attend(scores, value, hw)
        return out, scores, attn


class AttentionResidual(BaseModule):
    """Carries the last scores of stage m-1 into the first VA layer of stage m.

    A per-head 2x2 stride-2 depthwise conv halves the query grid (odd grids padded with copies), a 1x1 map mixes
    the h_{m-1} heads into h_m, a per-head LayerScale (CaiT) scales them. Keys need no resampling (docs/design.md).

    Args:
        in_heads (int): h_{m-1}.
        out_heads (int): h_m.
        layer_scale_init (float): Initial LayerScale gamma. Default: 0.1.
        init_cfg (dict, optional): Initialization config. Default: None.

    Shapes:
        scores (B, in_heads, K, H * W) -> (B, out_heads, K, ceil(H/2) * ceil(W/2)).
    """

    def __init__(self, in_heads, out_heads, layer_scale_init=0.1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.layer_scale_init = float(layer_scale_init)
        self.downsample_weight = nn.Parameter(torch.empty(in_heads, 1, 2, 2))
        self.head_mix = nn.Parameter(torch.empty(out_heads, in_heads))
        self.gamma = nn.Parameter(torch.empty(out_heads))
        self.init_average()

    def init_average(self):
        """2x2 average pooling of each head's scores, an even mix of the heads, LayerScale gamma."""
        with torch.no_grad():
            self.downsample_weight.fill_(0.25)
            self.head_mix.fill_(1. / self.head_mix.shape[1])
            self.gamma.fill_(self.layer_scale_init)

    def forward(self, scores: Tensor, hw: Tuple[int, int]) -> Tensor:
        with autocast_disabled(scores.device.type):
            scores, _ = per_head_depthwise_conv(scores.to(self.head_mix.dtype), self.downsample_weight, hw, stride=2)
            batch, in_heads, num_cells, num_queries = scores.shape
            # LayerScale folded into the head mix, one batched product: no transposed copy, no extra pass.
            scaled_mix = (self.gamma[:, None] * self.head_mix).expand(batch, -1, -1)
            mixed = torch.bmm(scaled_mix, scores.reshape(batch, in_heads, -1))
            return mixed.view(batch, -1, num_cells, num_queries)
