"""The position-carrying feed-forward network of LaViT."""
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor


class MixFFN(BaseModule):
    """Linear, 3x3 depthwise conv, activation, linear (as in SegFormer / PVTv2).

    The depthwise convolution carries position, so LaViT needs no position
    embedding. It runs on the NCHW view of channels-last tokens, so no copy is
    made between the linear layers and the convolution.

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
        hidden = self.dwconv(hidden.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.drop(self.fc2(self.drop(self.act(hidden))))
