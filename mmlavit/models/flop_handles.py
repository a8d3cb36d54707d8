"""mmengine's FLOP counter, taught the fused product LaViT's attention runs (``torch.baddbmm``)."""
from mmengine.analysis import complexity_analysis
from mmengine.analysis.jit_handles import bmm_flop_jit, generic_activation_jit


def baddbmm_flop_jit(inputs, outputs):
    """baddbmm(bias, batch1, batch2): the batch1 @ batch2 product, counted as bmm counts it."""
    return bmm_flop_jit(inputs[1:3], outputs)


def register_flop_handles() -> None:
    """Adds baddbmm to the handles every FlopAnalyzer starts with (mmdet's and mmseg's get_flops tools use
    mmengine's ``get_model_complexity_info``, which has none for it and would skip LaViT's attention products)."""
    complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.setdefault('aten::baddbmm', baddbmm_flop_jit)
    complexity_analysis._DEFAULT_SUPPORTED_ACT_OPS.setdefault('aten::baddbmm', generic_activation_jit())
