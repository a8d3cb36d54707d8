"""The position-carrying feed-forward network of LaViT."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor
from torch.autograd.function import once_differentiable

from .precision import autocast_disabled


class DWConvGELULinear(torch.autograd.Function):
    """Depthwise conv, GELU and a linear layer that save only the conv's input for backward.

    Autograd would keep three hidden maps (the inputs of the conv, the GELU and the linear layer); this keeps the first
    and recomputes the conv and the GELU in backward. With the GELU in place, no pass allocates more hidden maps than
    autograd's (backward holds at most three). The recomputation runs in the forward pass's dtypes (so it matches under
    autocast); ``save_for_backward`` lets ``torch.utils.checkpoint`` pack the kept tensors.

    Args:
        hidden (Tensor): The conv's input, channels-last (B, H, W, R).
        conv_weight (Tensor): Depthwise weight (R, 1, k, k).
        conv_bias (Tensor): (R, ).
        fc_weight (Tensor): Linear weight (C, R).
        fc_bias (Tensor): (C, ).
        conv_args (tuple): The conv's stride, padding, dilation and groups.
        approximate (str): The GELU's approximation, 'none' or 'tanh'.

    Returns:
        Tensor: (B, H, W, C).
    """

    @staticmethod
    def forward(ctx, hidden, conv_weight, conv_bias, fc_weight, fc_bias, conv_args, approximate):
        conv_out = F.conv2d(hidden.permute(0, 3, 1, 2), conv_weight, conv_bias, *conv_args)
        act_out = torch.ops.aten.gelu_(conv_out.permute(0, 2, 3, 1), approximate=approximate)
        ctx.save_for_backward(hidden, conv_weight, conv_bias, fc_weight)
        ctx.conv_args, ctx.approximate, ctx.conv_dtype = conv_args, approximate, conv_out.dtype
        return F.linear(act_out, fc_weight, fc_bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        hidden, conv_weight, conv_bias, fc_weight = ctx.saved_tensors
        dtype, approximate = ctx.conv_dtype, ctx.approximate
        # The dtypes are explicit, so autocast (on if backward runs inside it) must not recast.
        with autocast_disabled(hidden.device.type):
            conv_in, weight = hidden.to(dtype).permute(0, 3, 1, 2), conv_weight.to(dtype)
            conv_out = F.conv2d(conv_in, weight, conv_bias.to(dtype), *ctx.conv_args).permute(0, 2, 3, 1)
            grad = grad_out.matmul(fc_weight.to(grad_out.dtype)).to(dtype)
            torch.ops.aten.gelu_backward.grad_input(grad, conv_out, approximate=approximate, grad_input=grad)
            act_out = torch.ops.aten.gelu_(conv_out, approximate=approximate)
            grad_2d = grad_out.reshape(-1, grad_out.shape[-1])
            grad_fc_weight = grad_2d.t().mm(act_out.reshape(-1, act_out.shape[-1]).to(grad_out.dtype))
            grad_fc_bias = grad_2d.sum(0)
            del conv_out, act_out
            stride, padding, dilation, groups = ctx.conv_args
            grad_hidden, grad_conv_weight, grad_conv_bias = torch.ops.aten.convolution_backward(
                grad.permute(0, 3, 1, 2), conv_in, weight, list(conv_bias.shape), stride, padding, dilation,
                False, [0, 0], groups, [True, True, True])
        # The weight's gradient in the weight's strides (DDP's gradient buckets expect them).
        grad_conv_weight = grad_conv_weight.to(conv_weight.dtype, memory_format=torch.contiguous_format)
        return (grad_hidden.permute(0, 2, 3, 1).to(hidden.dtype), grad_conv_weight, grad_conv_bias.to(conv_bias.dtype),
                grad_fc_weight.to(fc_weight.dtype), grad_fc_bias.to(fc_weight.dtype), None, None)


class MixFFN(BaseModule):
    """Linear, 3x3 depthwise conv, activation, linear (as in SegFormer / PVTv2).

    The depthwise conv carries position (LaViT has no position embedding) and runs on the NCHW view of channels-last
    tokens. Training forwards with gradients, a GELU and no active dropout run as :class:`DWConvGELULinear` (same
    results, one hidden map kept instead of three), except under torch.compile, which picks what to keep itself.

    Args:
        embed_dims (int): Channels C.
        mlp_ratio (float): Hidden channels = C * mlp_ratio.
        act_cfg (dict): Activation. Default: dict(type='GELU').
        drop_rate (float): Dropout after the activation and the output. Default: 0.
        init_cfg (dict, optional): Initialization config. Default: None.

    Shapes:
        x (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims, mlp_ratio, act_cfg=dict(type='GELU'), drop_rate=0., init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        hidden_dims = int(embed_dims * mlp_ratio)
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims)
        self.act = build_activation_layer(act_cfg)
        self.drop = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.fc1(x)
        if (self.training and torch.is_grad_enabled() and isinstance(self.act, nn.GELU)
                and self.drop.p == 0 and not torch.compiler.is_compiling()):
            conv = self.dwconv
            return DWConvGELULinear.apply(hidden, conv.weight, conv.bias, self.fc2.weight, self.fc2.bias,
                                          (conv.stride, conv.padding, conv.dilation, conv.groups),
                                          self.act.approximate)
        hidden = self.dwconv(hidden.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.drop(self.fc2(self.drop(self.act(hidden))))
