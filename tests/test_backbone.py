"""The LaViT backbone as docs/design.md describes it: shapes, layers, LA transforms, residual, DP loss, options."""
import json
import warnings
from pathlib import Path

import pytest
import torch

from mmlavit import LaViT, collect_dp_loss
from mmlavit.models import lavit as lavit_module
from mmlavit.models.attention import AttentionResidual, LessAttention, VanillaAttention
from mmlavit.models.diagonality import cell_attention, diagonal_loss, symmetry_loss
from mmlavit.models.errors import LaViTConfigError

STRIDES = (4, 8, 16, 32)


def expected_shapes(model, height, width, batch=1):
    shapes, h, w = [], height, width
    for stride, dims in zip(STRIDES, model.embed_dims):
        h, w = -(-height // stride), -(-width // stride)
        shapes.append((batch, dims, h, w))
    return shapes


@pytest.mark.parametrize('arch,size', [
    ('t', (224, 224)), ('s', (224, 224)), ('b', (224, 224)),
    ('t', (512, 512)), ('s', (512, 512)), ('b', (512, 512)),
    ('t', (800, 1333)),
    ('t', (255, 255)), ('t', (112, 137)), ('t', (33, 47)), ('s', (33, 47)),
])
def test_output_shapes_and_strides(arch, size):
    """On the meta device: the shapes of the CPU computation, without its arithmetic."""
    with torch.device('meta'):
        model = LaViT(arch=arch).eval()
        outs = model(torch.empty(1, 3, *size))
    assert isinstance(outs, tuple)
    assert [tuple(out.shape) for out in outs] == expected_shapes(model, *size)


def test_odd_sizes_match_swin_convention():
    # mmseg's Swin test: 112x137 gives 28x35, 14x18, 7x9, 4x5.
    with torch.no_grad():
        outs = LaViT(arch='t').eval()(torch.rand(1, 3, 112, 137))
    assert [tuple(out.shape[-2:]) for out in outs] == [(28, 35), (14, 18), (7, 9), (4, 5)]


def test_out_indices_select_stages():
    model = LaViT(arch='t', out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 96))
    assert [tuple(out.shape) for out in outs] == [(2, 128, 8, 12), (2, 512, 2, 3)]


@pytest.mark.parametrize('out_indices', [(1, 2, 3, 4), (-5, ), ()])
def test_out_indices_out_of_range_is_an_error(out_indices):
    with pytest.raises(ValueError, match=r'out_indices must be stage indices in -4\.\.3'):
        LaViT(arch='t', out_indices=out_indices)


def test_negative_out_indices_count_from_the_last_stage():
    model = LaViT(arch='t', out_indices=(-1, -3)).eval()
    assert model.out_indices == (3, 1)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [out.shape[1] for out in outs] == [128, 512]  # in stage order, as mmdet's Swin returns them


@pytest.mark.parametrize('size', [(31, 64), (64, 16), (8, 8)])
def test_too_small_input_names_the_minimum(size):
    with pytest.raises(ValueError, match='at least 32x32'):
        LaViT(arch='t')(torch.rand(1, 3, *size))


def test_arch_validation():
    with pytest.raises(ValueError, match='unknown LaViT arch'):
        LaViT(arch='xl')
    with pytest.raises(ValueError, match='va_layers'):
        LaViT(arch=dict(embed_dims=[32], depths=[2], va_layers=[0], num_heads=[1], mlp_ratios=[4]), out_indices=(0, ))
    custom = LaViT(arch=dict(embed_dims=[32, 64], depths=[2, 1], va_layers=[1, 1],
                             num_heads=[1, 2], mlp_ratios=[4, 4]), out_indices=(0, 1)).eval()
    with torch.no_grad():
        assert [o.shape[1] for o in custom(torch.rand(1, 3, 64, 64))] == [32, 64]


def test_layer_types_follow_va_layers():
    model = LaViT(arch='s')
    for stage, depth, va in zip(model.stages, (3, 4, 6, 4), (1, 2, 2, 2)):
        kinds = [type(layer.attn) for layer in stage.layers]
        assert kinds == [VanillaAttention] * va + [LessAttention] * (depth - va)


def record_scores(model):
    """Pre-softmax scores of every attention, in forward order."""
    records = []
    for module in model.modules():
        if isinstance(module, (VanillaAttention, LessAttention)):
            module.register_forward_hook(lambda mod, args, out: records.append((mod, out[1])))
    return records


def test_la_layer_reproduces_previous_scores_at_init():
    model = LaViT(arch='s')
    model.init_weights()
    model.eval()
    records = record_scores(model)
    with torch.no_grad():
        model(torch.rand(2, 3, 96, 128))
    la_count = 0
    for (_, prev_scores), (module, scores) in zip(records, records[1:]):
        if isinstance(module, LessAttention):
            la_count += 1
            assert torch.equal(scores, prev_scores)
    assert la_count == 10


def test_from_scratch_init_follows_pvtv2():
    """The MixFFN's linear layers start as the 1x1 convolutions they are in PVTv2; other linear layers as in ViT."""
    torch.manual_seed(0)
    model = LaViT(arch='t')
    model.init_weights()
    ffn = model.stages[2].layers[0].ffn
    assert ffn.fc1.weight.std().item() == pytest.approx((2 / 1280) ** 0.5, rel=0.05)
    assert ffn.fc2.weight.std().item() == pytest.approx((2 / 320) ** 0.5, rel=0.05)
    assert model.stages[2].layers[0].attn.query.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert ffn.fc1.bias.abs().sum() == 0
    # The FFN branch starts at the scale of its input (with the 0.02 init: 5-30%).
    inputs = torch.randn(1, 20, 20, 320)
    with torch.no_grad():
        assert ffn(inputs).norm() / inputs.norm() > 0.8

    vit_init = LaViT(arch='t', init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.))
    vit_init.init_weights()
    assert vit_init.stages[2].layers[0].ffn.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(vit_init.stages[2].layers[1].attn.theta_weight, torch.eye(49))
    conv = vit_init.stages[0].layers[0].ffn.dwconv.weight  # normal, std sqrt(2 / (3 * 3)), in both
    assert conv.std().item() == pytest.approx((2 / 9) ** 0.5, rel=0.05)


def test_la_layers_transform_scores_once_trained():
    model = LaViT(arch='t').eval()
    la = model.stages[0].layers[1].attn
    with torch.no_grad():
        la.theta_weight.add_(0.01 * torch.randn_like(la.theta_weight))
    records = record_scores(model)
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert not torch.equal(records[1][1], records[0][1])


def test_la_layers_have_no_query_or_key_projection():
    model = LaViT(arch='s')
    for module in model.modules():
        if isinstance(module, LessAttention):
            names = {name for name, _ in module.named_parameters()}
            assert not any('query' in name or 'key' in name for name in names), names
            # The pooled cells are projected to values only: C, not 2C, outputs.
            assert module.cell_proj.out_features == module.embed_dims
            assert module.theta_weight.shape == (49, 49)
            assert module.psi_weight.shape == (module.num_heads, 1, 3, 3)
        elif isinstance(module, VanillaAttention):
            assert module.cell_proj.out_features == 2 * module.embed_dims
            assert module.query.out_features == module.embed_dims


def run_attention(attn, x, prev, fold, monkeypatch):
    """Outputs and input/parameter gradients of one attention module, folded or not."""
    monkeypatch.setattr(attn, 'folds_projections', lambda num_queries: fold)
    attn.zero_grad()
    x = x.clone().requires_grad_()
    outs = attn(x, prev)
    weights = torch.Generator().manual_seed(1)
    sum((out * torch.randn(out.shape, generator=weights)).sum() for out in outs).backward()
    grads = [x.grad] + [param.grad.clone() for param in attn.parameters()]
    return [out.detach() for out in outs], grads


@pytest.mark.parametrize('attn_type,kwargs', [(VanillaAttention, {}), (VanillaAttention, dict(qkv_bias=False)),
                                              (LessAttention, {})])
def test_folded_projections_match_the_plain_ones(attn_type, kwargs, monkeypatch):
    torch.manual_seed(0)
    attn = attn_type(embed_dims=64, num_heads=4, pool_size=3, **kwargs)
    with torch.no_grad():
        for param in attn.parameters():
            param.normal_(std=0.2)
    x, prev = torch.randn(2, 9, 11, 64), torch.randn(2, 4, 9, 99)
    folded_outs, folded_grads = run_attention(attn, x, prev, True, monkeypatch)
    plain_outs, plain_grads = run_attention(attn, x, prev, False, monkeypatch)
    for folded, plain in zip(folded_outs + folded_grads, plain_outs + plain_grads):
        assert folded.abs().sum() > 0
        torch.testing.assert_close(folded, plain, rtol=1e-4, atol=1e-5)


def test_projections_fold_where_that_costs_fewer_flops():
    model = LaViT(arch='s')
    stage_attns = [stage.layers[0].attn for stage in model.stages]
    # Folding pays from N > K C / (C - (h - 1) K): 49, 79, 126 and 148 queries per stage.
    for attn, threshold in zip(stage_attns, (49, 79, 126, 148)):
        assert not attn.folds_projections(threshold) and attn.folds_projections(threshold + 1)
    # 224x224 stage 4 (7x7 queries) keeps the plain projections; every stage at 800x1333 folds.
    assert not stage_attns[3].folds_projections(49)
    assert all(attn.folds_projections(-(-800 // stride) * -(-1333 // stride))
               for attn, stride in zip(stage_attns, STRIDES))


def test_attention_residual_shapes_and_gradient_at_odd_sizes():
    model = LaViT(arch='t', drop_path_rate=0.).train()
    records = record_scores(model)
    outs = model(torch.rand(1, 3, 33, 47))
    # Random weights: every output is LayerNorm-ed, so a plain sum would be constant.
    sum((out * torch.randn_like(out)).sum() for out in outs).backward()
    first_va_scores = [scores for module, scores in records if module is model.stages[2].layers[0].attn]
    assert first_va_scores[0].shape == (1, 5, 49, 3 * 3)
    for index in (1, 2, 3):
        residual = model.stages[index].attn_residual
        for name, param in residual.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, (index, name)
    assert model.stages[0].attn_residual is None


def test_attn_residual_false_removes_the_path():
    with_ar = LaViT(arch='t').eval()
    without_ar = LaViT(arch='t', attn_residual=False).eval()
    assert not [name for name, _ in without_ar.named_parameters() if 'attn_residual' in name]
    assert [name for name, _ in with_ar.named_parameters() if 'attn_residual' in name]
    missing, unexpected = without_ar.load_state_dict(with_ar.state_dict(), strict=False)
    assert not missing and all('attn_residual' in key for key in unexpected)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out_with, out_without = with_ar(x), without_ar(x)
    assert torch.equal(out_with[0], out_without[0])  # stage 1 has no residual either way
    assert not torch.allclose(out_with[3], out_without[3])


def test_dp_loss_grad_reaches_theta_and_psi():
    model = LaViT(arch='t', drop_path_rate=0.).train()
    with collect_dp_loss() as dp:
        model(torch.rand(1, 3, 224, 224))  # every stage's grid (56 ... 7) holds the 7x7 cells
    assert dp.loss.dim() == 0 and torch.isfinite(dp.loss)
    dp.loss.backward()
    for module in model.modules():
        if isinstance(module, LessAttention):
            assert module.theta_weight.grad.abs().sum() > 0
            assert module.psi_weight.grad.abs().sum() > 0
    with pytest.warns(UserWarning, match='no DP loss collection is open'):
        model(torch.rand(1, 3, 64, 64))
    assert len(dp.losses) == 1  # a closed collection takes nothing more


def captured_dp_terms(model, x):
    """The DP loss a training forward adds to the collection, and each LA layer's (grid, L_sym + L_diag) recomputed."""
    captured = []
    for stage in model.stages:
        for layer in stage.layers:
            if layer.less_attention:
                layer.attn.register_forward_hook(
                    lambda module, args, out: captured.append((tuple(args[0].shape[1:3]), out[2])))
    with collect_dp_loss() as dp:
        model(x)
    held = dp.loss
    terms = [(hw, symmetry_loss(cells) + diagonal_loss(cells, model.dp_diagonal))
             for hw, attn in captured for cells in [cell_attention(attn.float(), hw, model.pool_size)]]
    return held, terms


def test_dp_loss_leaves_out_grids_smaller_than_the_cells():
    model = LaViT(arch='t', drop_path_rate=0., dp_weight=1.).train()
    held, terms = captured_dp_terms(model, torch.rand(1, 3, 160, 96))
    # LA layers in stages 1-3 (LaViT-T's stage 4 is VA only), grids 40x24, 20x12 and 10x6: stage 3's is smaller
    # than 7x7 in one direction.
    assert [hw for hw, _ in terms] == [(40, 24), (20, 12), (10, 6)]
    expected = torch.stack([term for hw, term in terms[:2]]).mean()
    torch.testing.assert_close(held, expected)


def test_dp_diagonal_option():
    """The log-ratio L_diag by default, the difference form on request, any other value refused by name."""
    assert LaViT(arch='t').dp_diagonal == 'log_ratio'
    layers = [layer for stage in LaViT(arch='t', dp_diagonal='difference').stages for layer in stage.layers]
    assert {layer.dp_diagonal for layer in layers} == {'difference'}
    with pytest.raises(LaViTConfigError, match="dp_diagonal='log' is not accepted: it must be 'difference' or "
                                               "'log_ratio' \\(model.backbone.dp_diagonal\\)"):
        LaViT(arch='t', dp_diagonal='log')


def test_dp_loss_is_zero_when_no_grid_holds_the_cells():
    model = LaViT(arch='t', drop_path_rate=0.).train()
    held, terms = captured_dp_terms(model, torch.rand(1, 3, 48, 48))  # stage 1 (12x12) holds the cells
    assert held is not None and held.item() != 0.
    model = LaViT(arch='t', drop_path_rate=0., frozen_stages=1).train()
    held, _ = captured_dp_terms(model, torch.rand(1, 3, 48, 48))  # 12x12 but frozen, then 6x6 and less
    assert held.item() == 0.


def test_dp_loss_weight():
    x = torch.rand(1, 3, 64, 64)
    model = LaViT(arch='t', drop_path_rate=0.).train()
    losses = []
    for dp_weight in (0.1, 1.0, 0.):
        model.dp_weight = dp_weight
        with collect_dp_loss() as dp:
            model(x)
        losses.append(dp.loss)
    assert torch.allclose(losses[0], 0.1 * losses[1])
    assert losses[2] is None


def test_nothing_extra_in_eval_mode(monkeypatch):
    calls = []
    original = lavit_module.layer_dp_terms
    monkeypatch.setattr(lavit_module, 'layer_dp_terms', lambda *a: calls.append(1) or original(*a))
    model = LaViT(arch='t')
    model.eval()
    with collect_dp_loss() as dp, torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert not calls and dp.loss is None
    model.train()
    with collect_dp_loss() as dp:
        model(torch.rand(1, 3, 64, 64))
    la_layers = sum(layer.less_attention for stage in model.stages for layer in stage.layers)
    assert la_layers == 3 and len(calls) == la_layers and dp.loss is not None


def test_without_a_collection_the_dp_loss_is_skipped_with_one_warning(monkeypatch):
    """Nothing would train it: no LA layer computes a term, no state is kept, Python warns once per process."""
    calls = []
    original = lavit_module.layer_dp_terms
    monkeypatch.setattr(lavit_module, 'layer_dp_terms', lambda *a: calls.append(1) or original(*a))
    model = LaViT(arch='t').train()
    state = set(vars(model))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('default')
        for _ in range(3):
            model(torch.rand(1, 3, 64, 64))
    assert [str(warning.message) for warning in caught] == [str(caught[0].message)]
    assert 'no DP loss collection is open' in str(caught[0].message) and 'mmlavit.DPLossHook' in str(caught[0].message)
    assert not calls and set(vars(model)) == state


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(1)
    plain = LaViT(arch='t', drop_path_rate=0.).train()
    checkpointed = LaViT(arch='t', drop_path_rate=0., with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 80)
    results = []
    for model in (plain, checkpointed):
        with collect_dp_loss() as dp:
            outs = model(x)
        dp_loss = dp.loss
        # Summed, not averaged: mean-sized gradients would sit below assert_close's tolerance.
        (sum((out ** 2).sum() for out in outs) + dp_loss).backward()
        grads = {name: param.grad.clone() for name, param in model.named_parameters()}
        results.append((outs, dp_loss, grads))
    (outs_a, dp_a, grads_a), (outs_b, dp_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(dp_a, dp_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)
    theta = 'stages.0.layers.1.attn.theta_weight'
    assert grads_b[theta].abs().sum() > 0


def test_frozen_stages():
    model = LaViT(arch='t', frozen_stages=2, out_indices=(0, 1, 2, 3))
    model.train()
    frozen = [model.stages[0], model.stages[1]]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in (model.stages[2], model.stages[3]):
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in module.modules())
    with collect_dp_loss():
        outs = model(torch.rand(1, 3, 64, 64))
    sum(out.sum() for out in outs).backward()
    assert all(p.grad is None for p in model.stages[1].parameters())


def test_frozen_stages_take_effect_when_built():
    """DDP wraps the model before training calls train(): the freeze must already hold."""
    model = LaViT(arch='t', frozen_stages=1)
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    expected = {name for name, _ in model.named_parameters() if name.startswith('stages.0.')}
    assert frozen == expected
    with pytest.raises(ValueError, match='frozen_stages'):
        LaViT(arch='t', frozen_stages=5)


def test_frozen_stem_only():
    model = LaViT(arch='t', frozen_stages=0).train()
    assert all(not p.requires_grad for p in model.stages[0].downsample.parameters())
    assert all(p.requires_grad for p in model.stages[0].layers.parameters())


def test_norm_eval_puts_batchnorm_in_eval():
    model = LaViT(arch='t', norm_eval=True)
    model.stages[0].bn = torch.nn.BatchNorm2d(4)
    model.train()
    assert not model.stages[0].bn.training and model.stages[0].layers.training


@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 2, 3), (3, )])
def test_every_parameter_gets_gradient(out_indices):
    """What DDP without find_unused_parameters needs, for every out_indices the configs use."""
    model = LaViT(arch='t', out_indices=out_indices, drop_path_rate=0.).train()
    with collect_dp_loss() as dp:
        outs = model(torch.rand(1, 3, 64, 64))
    (sum(out.mean() for out in outs) + dp.loss).backward()
    unused = [name for name, param in model.named_parameters() if param.grad is None]
    assert not unused


def reduce_for_reference(tensor, seed):
    """[sum, L2 norm, projection on a seeded random tensor] in float64: a change to any value moves the last."""
    tensor = tensor.detach().double()
    weights = torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return [tensor.sum().item(), tensor.norm().item(), (tensor * weights).sum().item()]


def test_outputs_dp_loss_and_gradients_match_the_reference():
    """A LaViT-T with fixed weights (LA transforms and attention residual away from their starts) in training.

    tests/data/lavit_t_reference.json holds, for this model and input, each
    output, the DP loss with its parts and every parameter's gradient (of a
    random projection of the outputs plus 100 times the DP loss), each reduced
    as :func:`reduce_for_reference` does: any change to LaViT's arithmetic
    or to what the DP loss collects shows here.
    """
    reference = json.loads((Path(__file__).parent / 'data' / 'lavit_t_reference.json').read_text())
    torch.manual_seed(0)
    model = LaViT(arch='t', drop_path_rate=0.)
    model.init_weights()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (LessAttention, AttentionResidual)):
                for param in module.parameters():
                    param.add_(0.1 * torch.randn(param.shape, generator=generator))
    model.train()
    with collect_dp_loss() as dp:
        outs = model(torch.rand(2, 3, 160, 224, generator=torch.Generator().manual_seed(2)))
    loss = sum((out * torch.randn(out.shape, generator=torch.Generator().manual_seed(3 + index))).sum()
               for index, out in enumerate(outs)) + 100 * dp.loss
    loss.backward()

    def check(values, expected, what):
        # The sum of a LayerNorm-ed map is near 0: tolerances relative to the norm.
        torch.testing.assert_close(torch.tensor(values), torch.tensor(expected), rtol=1e-4,
                                   atol=1e-5 * expected[1] + 1e-12, msg=what)

    for index, out in enumerate(outs):
        check(reduce_for_reference(out, 10 + index), reference['outputs'][index], f'output {index}')
    terms = dp.logged_terms()
    assert [dp.loss.item(), terms['dp_sym'].item(), terms['dp_diag'].item()] == pytest.approx(
        [reference['dp_loss'], reference['dp_sym'], reference['dp_diag']], rel=1e-4)
    names = [name for name, _ in model.named_parameters()]
    assert names == list(reference['grads'])
    for index, (name, param) in enumerate(model.named_parameters()):
        check(reduce_for_reference(param.grad, 100 + index), reference['grads'][name], name)
