"""The LaViT backbone: Less-Attention Vision Transformer for OpenMMLab."""
import inspect
import math
import warnings
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmengine.logging import MMLogger
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import PretrainedInit, constant_init, initialize, normal_init, trunc_normal_init
from mmengine.runner.checkpoint import load_state_dict
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmlavit.registry import MODELS
from .attention import AttentionResidual, LessAttention, VanillaAttention
from .diagonality import DIAGONAL_FORMS, layer_dp_terms
from .dp_collection import DPLossCollection, current_dp_collection
from .errors import LaViTConfigError, LaViTInputError
from .grid import pad_to_multiple
from .mixffn import MixFFN
from .pretrained import load_backbone_state_dict


class LaViTLayer(BaseModule):
    """A pre-norm transformer layer with a VA or an LA attention and a MixFFN.

    x = x + DropPath(Attn(LN(x))); x = x + DropPath(FFN(LN(x))).

    Args:
        embed_dims (int): Channels C.
        num_heads (int): Attention heads.
        mlp_ratio (float): MixFFN hidden ratio.
        less_attention (bool): An LA layer if True, else a VA layer.
        pool_size (int): Side of the pooled key grid.
        la_kernel (int): Kernel of Psi (LA layers only).
        qkv_bias (bool): Bias of the query, key and value projections. Default: True.
        drop_rate (float): Dropout after projections. Default: 0.
        attn_drop_rate (float): Dropout on attention probabilities. Default: 0.
        drop_path_rate (float): Stochastic depth of this layer. Default: 0.
        act_cfg (dict): Activation. Default: dict(type='GELU').
        norm_cfg (dict): Norm. Default: dict(type='LN').
        with_cp (bool): Gradient checkpointing. Default: False.
        dp_diagonal (str): The form of L_diag (LA layers only; see :func:`~mmlavit.models.diagonality.diagonal_loss`).
            Default: 'log_ratio'.
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    def __init__(self, embed_dims, num_heads, mlp_ratio, less_attention, pool_size, la_kernel=3,
                 qkv_bias=True, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
                 act_cfg=dict(type='GELU'), norm_cfg=dict(type='LN'), with_cp=False,
                 dp_diagonal='log_ratio', init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.less_attention = less_attention
        self.dp_diagonal = dp_diagonal
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        attn_kwargs = dict(attn_drop_rate=attn_drop_rate, proj_drop_rate=drop_rate,
                           norm_cfg=norm_cfg, act_cfg=act_cfg)
        if less_attention:
            self.attn = LessAttention(embed_dims, num_heads, pool_size, la_kernel, qkv_bias, **attn_kwargs)
        else:
            self.attn = VanillaAttention(embed_dims, num_heads, pool_size, qkv_bias, **attn_kwargs)
        self.drop_path = build_dropout(dict(type='DropPath', drop_prob=drop_path_rate))
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = MixFFN(embed_dims, mlp_ratio, act_cfg, drop_rate)

    def forward(self, x: Tensor, prev_scores: Optional[Tensor] = None, attn_bias: Optional[Tensor] = None,
                with_dp: bool = False):
        """Runs the layer.

        Args:
            x (Tensor): Tokens (B, H, W, C).
            prev_scores (Tensor, optional): The previous layer's pre-softmax scores (B, heads, K, N), which an LA
                layer re-parameterises (LA layers only, required there).
            attn_bias (Tensor, optional): An additive bias to a VA layer's scores (B, heads, K, N): the attention
                residual of the stage's first layer (VA layers only).
            with_dp (bool): Compute this layer's DP terms (LA layers only).

        Returns:
            tuple: Tokens (B, H, W, C), the pre-softmax scores (B, heads, K, N), the (L_sym, L_diag) or None.
        """
        if self.less_attention:
            if prev_scores is None or attn_bias is not None:
                raise ValueError('an LA layer re-parameterises prev_scores and takes no attn_bias')
            scores_in = prev_scores
        else:
            if prev_scores is not None:
                raise ValueError('a VA layer computes its own scores: pass the attention residual as attn_bias')
            scores_in = attn_bias
        if self.with_cp and x.requires_grad:
            # Non-reentrant, so that the DP term returned from inside keeps its graph.
            return cp.checkpoint(self._inner_forward, x, scores_in, with_dp, use_reentrant=False)
        return self._inner_forward(x, scores_in, with_dp)

    def _inner_forward(self, x, scores_in, with_dp):
        attn_out, scores, attn = self.attn(self.norm1(x), scores_in)
        x = x + self.drop_path(attn_out)
        x = x + self.drop_path(self.ffn(self.norm2(x)))
        dp_term = None
        if with_dp and self.less_attention:
            dp_term = layer_dp_terms(attn, x.shape[1:3], self.attn.pool_size, self.dp_diagonal)
        return x, scores, dp_term


class Downsample(BaseModule):
    """A k x k stride-k convolution and a norm: the stem (k=4) or the 2x2 merging between stages, after padding
    the grid to a multiple of k (as the attention residual pads).

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Output channels.
        stride (int): Kernel size and stride.
        norm_cfg (dict): Norm. Default: dict(type='LN').
        init_cfg (dict, optional): Initialization config. Default: None.

    Shapes:
        x (B, C_in, H, W) NCHW -> (B, ceil(H/k), ceil(W/k), embed_dims) channels-last.
    """

    def __init__(self, in_channels, embed_dims, stride, norm_cfg=dict(type='LN'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.stride = stride
        self.proj = nn.Conv2d(in_channels, embed_dims, stride, stride=stride)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(pad_to_multiple(x, self.stride)).permute(0, 2, 3, 1))


class LaViTStage(BaseModule):
    """One stage: downsampling, attention residual, VA layers, LA layers and a closing norm.

    As in PVTv2 and MiT, the normalised stage output is both the feature map returned for this stage and the input
    of the next stage, so every parameter is used whatever ``out_indices`` selects, and a classifier's checkpoint
    holds every key a detector's backbone has.

    Args:
        in_channels (int): Channels entering the stage.
        embed_dims (int): Channels of the stage.
        num_heads (int): Heads of the stage.
        depth (int): Layers.
        va_layers (int): How many of the first layers are VA layers (>= 1).
        mlp_ratio (float): MixFFN hidden ratio.
        downsample_stride (int): 4 for the first stage (the stem), 2 after.
        residual_heads (int, optional): Heads of the previous stage when the attention residual is used, else None.
        layer_kwargs (dict): Passed on to every :class:`LaViTLayer`.
        drop_path_rates (Sequence[float]): One per layer.
        ar_layer_scale_init (float): Initial LayerScale of the attention residual.
        norm_cfg (dict): Norm. Default: dict(type='LN').
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    def __init__(self, in_channels, embed_dims, num_heads, depth, va_layers, mlp_ratio,
                 downsample_stride, residual_heads, layer_kwargs, drop_path_rates,
                 ar_layer_scale_init=0.1, norm_cfg=dict(type='LN'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not 1 <= va_layers <= depth:
            raise LaViTConfigError(f'a stage needs 1 <= va_layers <= depth, got va_layers={va_layers}, '
                             f'depth={depth}')
        self.downsample = Downsample(in_channels, embed_dims, downsample_stride, norm_cfg)
        self.attn_residual = None
        if residual_heads is not None:
            self.attn_residual = AttentionResidual(residual_heads, num_heads, ar_layer_scale_init)
        self.layers = ModuleList([
            LaViTLayer(embed_dims, num_heads, mlp_ratio, less_attention=index >= va_layers,
                       drop_path_rate=drop_path_rates[index], norm_cfg=norm_cfg, **layer_kwargs)
            for index in range(depth)
        ])
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: Tensor, prev_scores: Optional[Tensor], prev_hw: Tuple[int, int],
                with_dp: bool):
        """Runs the stage.

        Args:
            x (Tensor): The image (B, 3, H, W), or the previous stage's tokens as an NCHW view (B, C, H, W).
            prev_scores (Tensor, optional): The previous stage's last scores (B, heads_prev, K, N_prev), or None.
            prev_hw (tuple[int, int]): The previous stage's grid.
            with_dp (bool): Compute DP terms in the LA layers.

        Returns:
            tuple: Normalised tokens (B, H, W, C), the last scores (B, heads, K, H * W) and the list of its LA
            layers' (L_sym, L_diag), each of shape (2,).
        """
        x = self.downsample(x)
        residual = None
        if self.attn_residual is not None and prev_scores is not None:
            residual = self.attn_residual(prev_scores, prev_hw)
        scores, dp_terms = None, []
        for index, layer in enumerate(self.layers):
            if layer.less_attention:
                x, scores, dp_term = layer(x, prev_scores=scores, with_dp=with_dp)
            else:
                x, scores, dp_term = layer(x, attn_bias=residual if index == 0 else None, with_dp=with_dp)
            if dp_term is not None:
                dp_terms.append(dp_term)
        return self.norm(x), scores, dp_terms


@MODELS.register_module()
class LaViT(BaseModule):
    """Less-Attention Vision Transformer.

    A PyTorch implementation of `You Only Need Less Attention at Each Stage in Vision Transformers
    <https://arxiv.org/abs/2406.00427>`_ (CVPR 2024) as a multi-scale backbone (docs/design.md): every layer
    attends from all N query tokens to a fixed P x P grid of pooled key cells. Each stage starts with VA layers
    (query/key attention) and continues with LA layers, which re-parameterise the previous layer's scores with a
    K x K map over keys (Theta) and a depthwise conv over the query grid (Psi). An attention residual carries the
    last scores of a stage into the next one.

    A training forward with gradients (train mode, grad mode, ``dp_weight > 0``, an LA layer in an unfrozen stage)
    also adds ``dp_weight * L_DP`` of its LA layers to the open DP loss collection (:func:`mmlavit.collect_dp_loss`,
    which ``mmlavit.DPLossHook`` opens around each ``mode='loss'`` forward); it returns the NCHW features.

    Args:
        arch (str | dict): 't', 's', 'b' (or 'tiny', 'small', 'base') or a dict with keys embed_dims, depths,
            va_layers, num_heads, mlp_ratios (one entry per stage). Default: 's'.
        in_channels (int): Input channels. Default: 3.
        pool_size (int): P, the side of the pooled key grid (>= 2). Default: 7.
        la_kernel (int): Odd kernel of the LA layers' Psi convolution. Default: 3.
        attn_residual (bool): Use the attention residual between stages. Default: True.
        ar_layer_scale_init (float): Initial LayerScale of the attention residual. Default: 0.1.
        dp_weight (float): Weight of the DP loss (>= 0); 0 turns it off. Default: 0.1.
        dp_diagonal (str): The form of the DP loss's L_diag: 'log_ratio', log(mean off-diagonal / diagonal) of
            the cell attention, or 'difference', mean off-diagonal - diagonal (docs/design.md, "The DP loss").
            Default: 'log_ratio'.
        out_indices (Sequence[int]): Stages whose outputs are returned. Default: (0, 1, 2, 3).
        qkv_bias (bool): Bias of the query, key and value projections (the pooled cells' own projection keeps
            its bias, as PVTv2's). Default: True.
        drop_rate (float): Dropout rate, in [0, 1). Default: 0.
        attn_drop_rate (float): Attention dropout rate, in [0, 1). Default: 0.
        drop_path_rate (float): Stochastic depth rate, in [0, 1), spread linearly over the layers. Default: 0.1.
        act_cfg (dict): Activation. Default: dict(type='GELU').
        norm_cfg (dict): Norm of tokens and stage outputs, applied over the channel (last) axis of channels-last
            tokens: a LayerNorm type (BN, GN and SyncBN normalise another axis and are refused).
            Default: dict(type='LN').
        frozen_stages (int): Stages to freeze (stop grad and set eval mode); 0 freezes the stem only, -1 means
            not freezing any parameters. Default: -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode during training, as mmdet's backbones offer it
            (LaViT's own norms are LayerNorms). Default: False.
        with_cp (bool): Gradient checkpointing: less memory, slower training. Default: False.
        pretrained (str, optional): Deprecated, as in mmdet's and mmseg's backbones: a checkpoint path or URL
            becomes ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``, with a warning. Default: None.
        init_cfg (dict | list[dict], optional): Initialization config, e.g. ``dict(type='Pretrained',
            checkpoint='lavit_s.pth', prefix='backbone.')``, or a list of initialisers as mmengine takes them.
            Default: None (trained from scratch).

    Raises:
        LaViTConfigError: An option's value or an init_cfg key that LaViT does not accept; the message names it
            and what is accepted.

    Shapes:
        Input (B, in_channels, H, W) with B >= 1, H, W >= 32; output a tuple of (B, embed_dims[i], ceil(H / s_i),
        ceil(W / s_i)) for i in out_indices, s = (4, 8, 16, 32).
    """

    # One family: the channels (so every variant fits the same neck), heads and MLP ratios are shared;
    # the variants differ in depth and VA/LA split (docs/design.md, "Variants").
    arch_zoo = {
        't': dict(embed_dims=[64, 128, 320, 512], depths=[2, 2, 2, 2], va_layers=[1, 1, 1, 2],
                  num_heads=[1, 2, 5, 8], mlp_ratios=[4, 8, 4, 4]),
        's': dict(embed_dims=[64, 128, 320, 512], depths=[3, 4, 6, 4], va_layers=[1, 2, 2, 2],
                  num_heads=[1, 2, 5, 8], mlp_ratios=[4, 8, 4, 4]),
        'b': dict(embed_dims=[64, 128, 320, 512], depths=[3, 4, 18, 5], va_layers=[1, 2, 4, 2],
                  num_heads=[1, 2, 5, 8], mlp_ratios=[4, 8, 4, 4]),
    }
    #: The long names of the shipped archs, as mmpretrain's backbones take them.
    arch_aliases = {'tiny': 't', 'small': 's', 'base': 'b'}
    #: The smallest input side: four stages with a total stride of 32.
    min_input_size = 32
    #: The keys a ``Pretrained`` init_cfg may have: its type and the arguments of mmengine's PretrainedInit.
    pretrained_keys = ('type', *inspect.signature(PretrainedInit).parameters)

    def __init__(self, arch='s', in_channels=3, pool_size=7, la_kernel=3, attn_residual=True,
                 ar_layer_scale_init=0.1, dp_weight=0.1, out_indices=(0, 1, 2, 3), qkv_bias=True,
                 drop_rate=0., attn_drop_rate=0., drop_path_rate=0.1, act_cfg=dict(type='GELU'),
                 norm_cfg=dict(type='LN'), frozen_stages=-1, norm_eval=False, with_cp=False,
                 dp_diagonal='log_ratio', pretrained=None, init_cfg=None):
        super().__init__(init_cfg=self._check_init_cfg(init_cfg, pretrained))
        self.arch_settings = self._resolve_arch(arch)
        num_stages = len(self.arch_settings['depths'])
        out_indices = self._resolve_out_indices(out_indices, num_stages)
        _check_option('frozen_stages', frozen_stages, isinstance(frozen_stages, int)
                      and -1 <= frozen_stages <= num_stages, f'an int in -1..{num_stages}')
        _check_option('pool_size', pool_size, isinstance(pool_size, int) and pool_size >= 2,
                      'an int >= 2 (the DP loss compares cells)')
        _check_option('la_kernel', la_kernel, isinstance(la_kernel, int) and la_kernel % 2 == 1,
                      'an odd int (Psi is centred)')
        _check_option('dp_weight', dp_weight, _is_number(dp_weight) and 0 <= dp_weight < math.inf,
                      'a number >= 0 (0 turns the DP loss off)')
        _check_option('dp_diagonal', dp_diagonal, dp_diagonal in DIAGONAL_FORMS,
                      ' or '.join(repr(form) for form in DIAGONAL_FORMS))
        for name, rate in (('drop_rate', drop_rate), ('attn_drop_rate', attn_drop_rate),
                           ('drop_path_rate', drop_path_rate)):
            _check_option(name, rate, _is_number(rate) and 0 <= rate < 1, 'a rate in [0, 1)')
        _check_layer_norm(norm_cfg)
        self.in_channels = in_channels
        self.pool_size = pool_size
        self.dp_weight = dp_weight
        self.dp_diagonal = dp_diagonal
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.embed_dims = self.arch_settings['embed_dims']

        depths = self.arch_settings['depths']
        drop_path_rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        layer_kwargs = dict(pool_size=pool_size, la_kernel=la_kernel, qkv_bias=qkv_bias,
                            drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, act_cfg=act_cfg,
                            with_cp=with_cp, dp_diagonal=dp_diagonal)
        self.stages = ModuleList()
        channels, heads = in_channels, None
        for index in range(num_stages):
            first_layer = sum(depths[:index])
            self.stages.append(LaViTStage(
                in_channels=channels,
                embed_dims=self.embed_dims[index],
                num_heads=self.arch_settings['num_heads'][index],
                depth=depths[index],
                va_layers=self.arch_settings['va_layers'][index],
                mlp_ratio=self.arch_settings['mlp_ratios'][index],
                downsample_stride=4 if index == 0 else 2,
                residual_heads=heads if attn_residual else None,
                layer_kwargs=layer_kwargs,
                drop_path_rates=drop_path_rates[first_layer:first_layer + depths[index]],
                ar_layer_scale_init=ar_layer_scale_init,
                norm_cfg=norm_cfg))
            channels, heads = self.embed_dims[index], self.arch_settings['num_heads'][index]

        # Before any wrapper (DDP registers the parameters that need gradients when it wraps).
        self._freeze_stages()

    @property
    def arch_name(self) -> Optional[str]:
        """The name of the shipped arch this LaViT is built with, or None for a custom arch."""
        settings = {key: list(value) for key, value in self.arch_settings.items()}
        return next((name for name, arch in self.arch_zoo.items() if settings == arch), None)

    @staticmethod
    def _resolve_out_indices(out_indices, num_stages):
        out_indices = (out_indices, ) if isinstance(out_indices, int) else tuple(out_indices)
        invalid = [index for index in out_indices if not -num_stages <= index < num_stages]
        if invalid or not out_indices:
            raise LaViTConfigError(f'out_indices must be stage indices in {-num_stages}..{num_stages - 1}, '
                                   f'got {out_indices}')
        return tuple(index % num_stages for index in out_indices)

    def _resolve_arch(self, arch):
        if isinstance(arch, str):
            name = self.arch_aliases.get(arch.lower(), arch.lower())
            if name not in self.arch_zoo:
                raise LaViTConfigError(f'unknown LaViT arch {arch!r}; choose one of {sorted(self.arch_zoo)} '
                                       f'(or {sorted(self.arch_aliases)}) or give a dict')
            return self.arch_zoo[name]
        required = {'embed_dims', 'depths', 'va_layers', 'num_heads', 'mlp_ratios'}
        if not isinstance(arch, dict) or set(arch) != required:
            raise LaViTConfigError(f'a custom LaViT arch must be a dict with exactly the keys '
                                   f'{sorted(required)}, got {arch!r}')
        if len({len(value) for value in arch.values()}) != 1:
            raise LaViTConfigError(f'every entry of a custom LaViT arch needs one value per stage: {arch!r}')
        return arch

    @classmethod
    def _check_init_cfg(cls, init_cfg, pretrained=None):
        """Refuses init_cfg entries that are not initialisers, and Pretrained keys mmengine does not read; turns a
        deprecated ``pretrained`` into the init_cfg."""
        if pretrained is not None:
            if not isinstance(pretrained, str) or init_cfg:
                raise LaViTConfigError(f'LaViT option pretrained={pretrained!r} is not accepted: it must be a '
                                       f'checkpoint path or URL, without an init_cfg (model.backbone.init_cfg)')
            warnings.warn('DeprecationWarning: LaViT option pretrained is deprecated, use model.backbone.init_cfg='
                          'dict(type=\'Pretrained\', checkpoint=...) instead', UserWarning, stacklevel=3)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        for entry in (init_cfg if isinstance(init_cfg, list) else [] if init_cfg is None else [init_cfg]):
            if not isinstance(entry, dict) or 'type' not in entry:
                raise LaViTConfigError(f'init_cfg entries must be dicts with a type, got {entry!r}')
            unknown = sorted(set(entry) - set(cls.pretrained_keys))
            if entry['type'] == 'Pretrained' and unknown:
                raise LaViTConfigError(
                    f'LaViT\'s Pretrained init_cfg has no key {", ".join(map(repr, unknown))}; it takes '
                    f'{", ".join(cls.pretrained_keys)} (e.g. model.backbone.init_cfg.checkpoint=PATH)')
        if isinstance(init_cfg, list) and sum(entry['type'] == 'Pretrained' for entry in init_cfg) > 1:
            raise LaViTConfigError('init_cfg may hold one Pretrained entry, got several')
        return init_cfg

    def init_weights(self):
        """Initialises every layer from scratch (:meth:`init_from_scratch`), then applies ``init_cfg`` on top.

        The init_cfg's initialisers other than ``Pretrained`` apply first (e.g. ``dict(type='TruncNormal',
        layer='Linear', std=0.02, bias=0.)``, ViT's init); last, as in mmengine, a ``Pretrained`` checkpoint
        replaces the weights it has, and layers it lacks keep LaViT's own init (the log lists them). Without a
        checkpoint (the shipped configs' default) a log line says that training starts from scratch.
        """
        logger = MMLogger.get_current_instance()
        entries = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = next((entry for entry in entries if entry['type'] == 'Pretrained'), None)
        self.init_from_scratch()
        initializers = [entry for entry in entries if entry['type'] != 'Pretrained']
        if initializers:
            initialize(self, initializers)
        if pretrained is not None and pretrained.get('checkpoint'):
            state_dict = load_backbone_state_dict(pretrained, self)
            load_state_dict(self, state_dict, strict=False, logger=logger)
        else:
            logger.warning(f'No pre-trained weights for {self.__class__.__name__}, '
                           'training starts from scratch')
        self._is_init = True

    def init_from_scratch(self):
        """Initialises every layer as PVTv2 initialises its counterpart (docs/design.md, "Initialisation").

        Linear layers: truncated normal, std 0.02, but the MixFFN's two, which are 1x1 convolutions in PVTv2,
        start as every convolution: normal, std sqrt(2 / fan_out). LayerNorms: 1 and 0. The LA transforms start
        as the identity, the attention residual as an average.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_init(module, std=.02, bias=0.)
            elif isinstance(module, nn.LayerNorm):
                constant_init(module, 1.0, bias=0.)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                normal_init(module, 0, math.sqrt(2.0 / (fan_out // module.groups)))
            elif isinstance(module, LessAttention):
                module.init_identity()
            elif isinstance(module, AttentionResidual):
                module.init_average()
        for module in self.modules():
            if isinstance(module, MixFFN):
                for fc in (module.fc1, module.fc2):
                    normal_init(fc, 0, math.sqrt(2.0 / fc.out_features), bias=0.)

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """The layer depth of a parameter, for layer-wise learning-rate decay.

        mmpretrain's contract (``LearningRateDecayOptimWrapperConstructor``; its Swin counts the same way): the
        stem is layer 0, the transformer layers are 1..L counted through the stages, each stage's closing norm goes
        with the stage's last layer, and the merging and the attention residual at the start of stage i (i > 0)
        with stage i-1's last layer, where Swin's merging sits. Parameters outside the backbone (neck, heads) get
        L + 1.

        Args:
            param_name (str): The parameter's name.
            prefix (str): The backbone's prefix in ``param_name``, e.g. 'backbone.'. Default: ''.

        Returns:
            tuple[int, int]: The layer depth and the number of depths, L + 2.
        """
        depths = self.arch_settings['depths']
        num_layers = sum(depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        parts = param_name[len(prefix):].split('.')
        if parts[0] != 'stages' or len(parts) < 3:
            return num_layers - 1, num_layers
        stage = int(parts[1])
        if parts[2] == 'layers':
            depth = sum(depths[:stage]) + int(parts[3]) + 1
        elif parts[2] == 'norm':
            depth = sum(depths[:stage + 1])
        else:  # downsample, attn_residual
            depth = sum(depths[:stage])
        return depth, num_layers

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.stages[0].downsample] + list(self.stages[:self.frozen_stages])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def _check_input(self, x: Tensor):
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise LaViTInputError(f'LaViT takes a batch of images (B, {self.in_channels}, H, W), got {shape}; '
                                  f'add the batch axis to a single image with x[None]')
        batch, channels, height, width = x.shape
        if batch == 0 or channels != self.in_channels:
            raise LaViTInputError(f'LaViT takes a batch of images (B, {self.in_channels}, H, W) with B >= 1, '
                                  f'got {tuple(x.shape)}' + ('' if batch else ': the batch is empty'))
        if min(height, width) < self.min_input_size:
            raise LaViTInputError(
                f'LaViT needs inputs of at least {self.min_input_size}x{self.min_input_size} pixels '
                f'(four stages, total stride 32), got {height}x{width}. Resize or pad the images, '
                f'e.g. with a larger Resize scale or the data preprocessor\'s pad_size_divisor=32.')

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Computes the stage features.

        Args:
            x (Tensor): Images (B, C, H, W), B >= 1, H and W >= 32.

        Returns:
            tuple[Tensor]: NCHW features of the stages in ``out_indices``.
        """
        self._check_input(x)
        collection = self._dp_collection()
        outs, dp_terms = [], []
        scores, hw = None, None
        for index, stage in enumerate(self.stages):
            # A frozen stage's DP terms have nothing to train.
            with_dp = collection is not None and index >= self.frozen_stages
            tokens, scores, stage_dp_terms = stage(x, scores, hw, with_dp)
            dp_terms.extend(stage_dp_terms)
            hw = tokens.shape[1:3]
            x = tokens.permute(0, 3, 1, 2)
            if index in self.out_indices:
                outs.append(x.contiguous())
        if collection is not None:
            # Zero when every LA layer's grid was smaller than the cells: loss_dp stays in the loss
            # dict at every input size.
            terms = torch.stack(dp_terms).mean(dim=0) if dp_terms else None
            collection.add(x.new_zeros(()) if terms is None else self.dp_weight * terms.sum(), terms)
        return tuple(outs)

    def _dp_collection(self) -> Optional[DPLossCollection]:
        """The collection this forward adds its DP loss to, or None: then it computes none (and warns, once
        per process as Python warns, when it would have computed one but no collection is open)."""
        if not (self.training and torch.is_grad_enabled() and self.dp_weight > 0
                and any(layer.less_attention for stage in self.stages[max(self.frozen_stages, 0):]
                        for layer in stage.layers)):
            return None
        collection = current_dp_collection()
        if collection is None:
            warnings.warn(
                'LaViT\'s diagonality-preserving loss is not trained: no DP loss collection is open. Add '
                '`custom_hooks = [dict(type=\'mmlavit.DPLossHook\')]` to the config (or call '
                'mmlavit.attach_dp_loss(model), or run the forward inside `with mmlavit.collect_dp_loss():`), '
                'or set `model.backbone.dp_weight=0` to skip it.', UserWarning, stacklevel=2)
        return collection


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_option(name: str, value, valid: bool, accepted: str):
    if not valid:
        raise LaViTConfigError(f'LaViT option {name}={value!r} is not accepted: it must be {accepted} '
                               f'(model.backbone.{name})')


def _check_layer_norm(norm_cfg: dict):
    """LaViT normalises channels-last tokens over the last axis: only LayerNorm types do that."""
    try:
        norm = build_norm_layer(norm_cfg, 8)[1]
    except Exception as error:  # an unknown type or argument: mmcv's own message says which
        raise LaViTConfigError(f'LaViT option norm_cfg={norm_cfg!r} cannot be built: {error}') from None
    if not isinstance(norm, nn.LayerNorm):
        raise LaViTConfigError(
            f'LaViT option norm_cfg={norm_cfg!r} is not accepted: LaViT normalises channels-last tokens over '
            f'their channels, which only LayerNorm types do (BN, SyncBN and GN normalise another axis); use '
            f"norm_cfg=dict(type='LN') (model.backbone.norm_cfg)")
