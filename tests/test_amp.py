"""LaViT under autocast: the pre-softmax scores stay in float32, training stays finite, eval stays near fp32.

CPU autocast runs the same code path as CUDA's: bfloat16 everywhere, float16
where torch supports it on CPU (matmul and convolution).
"""
import warnings

import pytest
import torch

from mmlavit import LaViT, collect_dp_loss
from mmlavit.cli.flops import build_backbone
from mmlavit.models.attention import LessAttention, VanillaAttention


def cpu_supports_float16_autocast():
    with warnings.catch_warnings(), torch.autocast('cpu', dtype=torch.float16):
        warnings.simplefilter('ignore')  # torch versions without it warn and disable autocast
        return torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float16


FLOAT16 = pytest.param(torch.float16, id='float16', marks=pytest.mark.skipif(
    not cpu_supports_float16_autocast(), reason='this torch has no float16 autocast on CPU'))


def record_scores(model):
    """Pre-softmax scores of every VA and LA layer, in forward order."""
    records = []
    for module in model.modules():
        if isinstance(module, (VanillaAttention, LessAttention)):
            module.register_forward_hook(lambda mod, args, out: records.append(out[1]))
    return records


#: LaViT-S's depths, VA/LA split and heads at a quarter of its widths: its LA chains, at a fraction of
#: the time (CPU autocast emulates much of its low-precision arithmetic).
NARROW_S = dict(LaViT.arch_zoo['s'], embed_dims=[16, 32, 80, 128])


@pytest.mark.parametrize('dtype', [pytest.param(torch.bfloat16, id='bfloat16'), FLOAT16])
def test_lavit_s_training_step_under_autocast_is_finite(dtype):
    model = LaViT(arch=NARROW_S, drop_path_rate=0.).train()
    x = torch.rand(1, 3, 112, 160)  # stages 1-3 hold the 7x7 cells: three stages of DP terms
    with collect_dp_loss() as fp32_dp:
        model(x)
    fp32_dp_loss = fp32_dp.loss.detach()
    records = record_scores(model)
    with torch.autocast('cpu', dtype=dtype), collect_dp_loss() as dp:
        outs = model(x)
        dp_loss = dp.loss
        loss = sum((out.float() ** 2).mean() for out in outs) + dp_loss
    loss.backward()
    assert all(scores.dtype == torch.float32 and torch.isfinite(scores).all() for scores in records)
    assert all(out.dtype == dtype and torch.isfinite(out).all() for out in outs)
    assert dp_loss.dtype == torch.float32
    torch.testing.assert_close(dp_loss.detach(), fp32_dp_loss, rtol=0.05, atol=0)
    for name, param in model.named_parameters():
        assert torch.isfinite(param.grad).all(), name
    theta = model.stages[2].layers[-1].attn.theta_weight
    assert theta.grad.abs().max() > 0


def test_lavit_b_longest_la_chain_stays_finite_under_float16():
    """LaViT-B's third stage (4 VA, then 14 LA layers) with scores that outgrow float16 but not float32.

    The previous stage's scores reach about 1e6 (the attention residual reads
    them) and every Theta is 3 I, so the last LA layer's scores reach about
    4e6: any step of the chain run in float16 gives inf, then NaN. Where this
    torch has no float16 autocast on CPU, bfloat16 (float32's range) leaves
    only the dtype checks to fail.
    """
    dtype = torch.float16 if cpu_supports_float16_autocast() else torch.bfloat16
    stage = LaViT(arch='b', drop_path_rate=0.).stages[2].eval()
    with torch.no_grad():
        for layer in stage.layers:
            if layer.less_attention:
                layer.attn.theta_weight.mul_(3.)
    x, prev_scores = torch.randn(1, 128, 16, 20), 3e5 * torch.randn(1, 2, 49, 16 * 20)
    records = record_scores(stage)
    with torch.no_grad():
        _, reference, _ = stage(x, prev_scores, (16, 20), False)
        assert len(records) == 18 and 1e5 < reference.abs().max() < 1e8
        records.clear()
        with torch.autocast('cpu', dtype=dtype):
            out, scores, _ = stage(x, prev_scores, (16, 20), False)
    assert torch.isfinite(out).all()
    assert all(layer_scores.dtype == torch.float32 and torch.isfinite(layer_scores).all()
               for layer_scores in records)
    # Only the first VA product is rounded to float16; the chain scales it exactly.
    assert (scores - reference).abs().max() < 2e-2 * reference.abs().max()


def autocast_relative_errors(name):
    """max |out_bf16 - out_fp32| / max |out_fp32| per output of a seeded backbone at 160x224."""
    torch.manual_seed(0)
    model = build_backbone(name)
    model.init_weights()
    x = torch.rand(1, 3, 160, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x)
    return [((out.float() - ref).abs().max() / ref.abs().max()).item() for out, ref in zip(outs, reference)]


def test_autocast_error_is_as_small_as_pvtv2_and_swin():
    errors = {name: max(autocast_relative_errors(name)) for name in ('lavit-s', 'pvtv2-b2', 'swin-t')}
    assert 0 < errors['lavit-s'] <= 1.5 * max(errors['pvtv2-b2'], errors['swin-t']), errors
