"""LaViT's maths against hand computations: the DP loss, Theta, Psi, the layer chain and the attention residual.

Every expected value here is computed independently of the module under test
(explicit windows, index shuffles, per-map convolutions), away from the
identity initialisation wherever that would hide a mistake.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmlavit import LaViT, collect_dp_loss
from mmlavit.models.attention import AttentionResidual, LessAttention
from mmlavit.models.diagonality import cell_attention, diagonal_loss, layer_dp_terms, symmetry_loss

# Two LA layers in stage 2, one VA layer elsewhere.
SMALL_ARCH = dict(embed_dims=[16, 32, 40, 64], depths=[1, 3, 1, 1], va_layers=[1, 1, 1, 1],
                  num_heads=[1, 2, 5, 8], mlp_ratios=[2, 2, 2, 2])
# LA layers in every stage: at 64x96 with P = 3 stages 1-3 give DP terms, stage 4 (2x3) none.
DP_ARCH = dict(embed_dims=[16, 32, 40, 64], depths=[2, 3, 2, 2], va_layers=[1, 1, 1, 1],
               num_heads=[1, 2, 5, 8], mlp_ratios=[2, 2, 2, 2])
# A row-stochastic, asymmetric A. L_sym = 2 (0.5 + 0.2 + 0.3) / 9; L_diag = mean of
# (0.25 - 0.5, 0 - 1, 0.25 - 0.5).
ASYMMETRIC = torch.tensor([[0.5, 0.5, 0.], [0., 1., 0.], [0.2, 0.3, 0.5]])


def window(index, length, pool_size):
    """The adaptive-pooling window of cell ``index`` along an axis: [floor(i n / P), ceil((i + 1) n / P))."""
    return range(index * length // pool_size, math.ceil((index + 1) * length / pool_size))


def pooling_matrix(hw, pool_size):
    """M (N, K) with M[q, c] = 1 / |cell c| for the queries q of cell c (cells may overlap)."""
    height, width = hw
    matrix = torch.zeros(height * width, pool_size ** 2, dtype=torch.float64)
    for cy in range(pool_size):
        for cx in range(pool_size):
            queries = [y * width + x for y in window(cy, height, pool_size) for x in window(cx, width, pool_size)]
            matrix[queries, cy * pool_size + cx] = 1. / len(queries)
    return matrix


def reference_dp(attn, hw, pool_size, diagonal_form='difference'):
    """(L_sym, L_diag) of attention (B, heads, K, N), from the definitions, in float64."""
    cells = (attn.double() @ pooling_matrix(hw, pool_size)).transpose(-2, -1)  # rows = query cells
    num_cells = cells.shape[-1]
    sym = (cells - cells.transpose(-2, -1)).abs().mean()
    eye = torch.eye(num_cells, dtype=torch.bool)
    off_diagonal_mean = cells.masked_fill(eye, 0).sum(-1) / (num_cells - 1)
    if diagonal_form == 'log_ratio':
        return torch.stack([sym, (off_diagonal_mean.log() - cells[..., eye].log()).mean()])
    return torch.stack([sym, (off_diagonal_mean - cells[..., eye]).mean()])


def perturb_less_attention(model, scale=0.1):
    """Moves every LA layer's Theta and Psi away from the identity."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LessAttention):
                module.theta_weight.add_(scale * torch.randn_like(module.theta_weight))
                module.theta_bias.add_(scale * torch.randn_like(module.theta_bias))
                module.psi_weight.add_(scale * torch.randn_like(module.psi_weight))


def record(modules):
    """Maps each attention module, in forward order, to (input tokens, pre-softmax scores, attention)."""
    records = {}
    for module in modules:
        module.register_forward_hook(lambda mod, args, out: records.__setitem__(mod, (args[0], out[1], out[2])))
    return records


@pytest.mark.parametrize('cells,sym,diag', [
    (torch.eye(4), 0., -1.),
    (torch.full((4, 4), 0.25), 0., 0.),
    (ASYMMETRIC, 2 / 9, -0.5),
    # The mean over batch and heads: A^T has L_diag -0.5 too (the same off-diagonal mass).
    (torch.stack([torch.stack([torch.eye(3), torch.full((3, 3), 1 / 3)]),
                  torch.stack([ASYMMETRIC, ASYMMETRIC.T])]), 1 / 9, -0.5),
], ids=['identity', 'uniform', 'asymmetric', 'batch-and-head-mean'])
def test_dp_losses_of_hand_built_cell_matrices(cells, sym, diag):
    cells = cells.expand(1, 1, *cells.shape[-2:]) if cells.dim() == 2 else cells
    torch.testing.assert_close(symmetry_loss(cells), torch.tensor(sym), rtol=0, atol=1e-6)
    torch.testing.assert_close(diagonal_loss(cells, 'difference'), torch.tensor(diag), rtol=0, atol=1e-6)


@pytest.mark.parametrize('cells,diag', [
    (torch.full((4, 4), 0.25), 0.),
    # Rows log(0.2 / 0.6), log(0.1 / 0.8), log(0.25 / 0.5).
    (torch.tensor([[0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]]),
     (math.log(1 / 3) + math.log(1 / 8) + math.log(1 / 2)) / 3),
    # The off-diagonal zeros are floored at 1e-6.
    (torch.eye(4), math.log(1e-6)),
    # A zero diagonal is floored too: row 0 is log(0.5 / 1e-6).
    (torch.tensor([[0., 0.5, 0.5], [0.5, 0.5, 0.], [0.5, 0., 0.5]]), (math.log(5e5) + 2 * math.log(0.5)) / 3),
    # Near uniform, about K times the difference form: diagonal (1 + d) / K, off-diagonal (1 - d / (K - 1)) / K.
    (torch.full((5, 5), (1 - 0.01 / 4) / 5).fill_diagonal_(1.01 / 5), math.log((1 - 0.01 / 4) / 1.01)),
], ids=['uniform', 'three-cells', 'identity-floored', 'zero-diagonal-floored', 'near-uniform'])
def test_log_ratio_diagonal_loss_of_hand_built_cell_matrices(cells, diag):
    cells = cells.expand(2, 3, *cells.shape)
    torch.testing.assert_close(diagonal_loss(cells.double(), 'log_ratio'), torch.tensor(diag, dtype=torch.float64),
                               rtol=1e-6, atol=1e-6)


def test_log_ratio_is_about_k_times_the_difference_near_uniform():
    num_cells, excess = 49, 1e-3
    cells = torch.full((num_cells, num_cells), (1 - excess / (num_cells - 1)) / num_cells)
    cells.fill_diagonal_((1 + excess) / num_cells)
    cells = cells[None, None].double()
    ratio = diagonal_loss(cells, 'log_ratio') / diagonal_loss(cells, 'difference')
    assert abs(ratio.item() - num_cells) < 0.1


def test_diagonal_loss_names_its_forms():
    with pytest.raises(ValueError, match="forms \\('difference', 'log_ratio'\\), got 'log'"):
        diagonal_loss(torch.eye(3)[None, None], 'log')


@pytest.mark.parametrize('shifts', [(0, 0), (0, 1), (1, 4)], ids=['identity', 'head-1-shifted', 'both-shifted'])
def test_cell_attention_rows_are_query_cells(shifts):
    """Head h: every query of cell c attends only to key cell (c + shift_h) mod 9, on a 6x9 grid, P = 3.

    A[c, (c + shift) mod 9] = 1 only if rows are query cells (a transposed A
    puts the ones at (c + shift, c)), the grid is read as H x W and the heads
    stay apart. Shift 0 gives A = I.
    """
    height, width, pool_size = 6, 9, 3
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    query_cell = ((rows // 2) * 3 + cols // 3).flatten()
    attn = torch.stack([F.one_hot((query_cell + shift) % 9, 9).T.float() for shift in shifts])
    cells = cell_attention(attn.expand(2, -1, -1, -1), (height, width), pool_size)
    expected = torch.stack([torch.eye(9).roll(shift, dims=1) for shift in shifts]).expand(2, -1, -1, -1)
    torch.testing.assert_close(cells, expected)


@pytest.mark.parametrize('hw', [(6, 9), (8, 11)])
def test_cell_attention_averages_the_queries_of_each_cell(hw):
    """Random attention: A[c, j] is the mean over the queries of cell c (adaptive windows) of attn[j, q]."""
    height, width = hw
    attn = torch.randn(2, 3, 9, height * width).softmax(dim=-2)
    grid = attn.view(2, 3, 9, height, width)
    expected = torch.empty(2, 3, 9, 9)
    for cy in range(3):
        for cx in range(3):
            ys, xs = window(cy, height, 3), window(cx, width, 3)
            expected[:, :, cy * 3 + cx] = grid[..., ys.start:ys.stop, xs.start:xs.stop].mean(dim=(-2, -1))
    torch.testing.assert_close(cell_attention(attn, hw, 3), expected)


def test_layer_dp_terms_are_sym_and_diag_and_skip_small_grids():
    attn = torch.randn(2, 2, 9, 8 * 11).mul(3).softmax(dim=-2)
    torch.testing.assert_close(layer_dp_terms(attn, (8, 11), 3, 'difference'), reference_dp(attn, (8, 11), 3).float())
    assert layer_dp_terms(torch.rand(1, 2, 9, 2 * 11), (2, 11), 3, 'difference') is None


def test_psi_acts_on_the_query_grid_with_its_orientation():
    """Head 0's Psi is a delta right of centre, head 1's below it, on a 9x11 grid.

    A cross-correlation with w[1, 2] = 1 reads the right neighbour: the scores
    move left along W by one, the last column becomes zero. Head 1 moves up
    along H. A transposed kernel, a W x H reading of the grid or filters
    assigned to the wrong heads all give other maps.
    """
    height, width, num_cells = 9, 11, 4
    la = LessAttention(embed_dims=8, num_heads=2, pool_size=2)
    with torch.no_grad():
        la.psi_weight.zero_()
        la.psi_weight[0, 0, 1, 2] = 1.
        la.psi_weight[1, 0, 2, 1] = 1.
    prev = torch.randn(2, 2, num_cells, height * width)
    with torch.no_grad():
        scores = la(torch.randn(2, height, width, 8), prev)[1]
    grid = prev.view(2, 2, num_cells, height, width)
    expected = torch.zeros_like(grid)
    expected[:, 0, :, :, :-1] = grid[:, 0, :, :, 1:]
    expected[:, 1, :, :-1, :] = grid[:, 1, :, 1:, :]
    torch.testing.assert_close(scores.view_as(grid), expected, rtol=0, atol=0)


def test_theta_permutes_the_key_cells():
    """Theta = the permutation matrix with Theta[k, perm[k]] = 1, plus a bias: S[k] = S'[perm[k]] + b_k."""
    perm = torch.tensor([3, 7, 0, 8, 1, 5, 2, 6, 4])  # not an involution: a transposed Theta differs
    la = LessAttention(embed_dims=8, num_heads=2, pool_size=3)
    bias = torch.arange(9.) / 2
    with torch.no_grad():
        la.theta_weight.copy_(torch.eye(9)[perm])
        la.theta_bias.copy_(bias)
    prev = torch.randn(2, 2, 9, 5 * 7)
    with torch.no_grad():
        scores = la(torch.randn(2, 5, 7, 8), prev)[1]
    torch.testing.assert_close(scores, prev[:, :, perm] + bias[:, None], rtol=0, atol=1e-6)


def test_theta_then_psi_with_bias_matches_per_map_convolutions():
    """S = Psi(Theta S' + b): Theta first, so at the zero-padded border Psi sees the bias too."""
    height, width = 5, 7
    la = LessAttention(embed_dims=6, num_heads=3, pool_size=2)
    with torch.no_grad():
        la.theta_weight.normal_()
        la.theta_bias.normal_()
        la.psi_weight.normal_()
    prev = torch.randn(2, 3, 4, height * width)
    with torch.no_grad():
        scores = la.transform_scores(prev, (height, width))
    keyed = torch.einsum('kj,bhjn->bhkn', la.theta_weight, prev) + la.theta_bias[:, None]
    expected = torch.empty(2, 3, 4, height, width)
    for b in range(2):
        for h in range(3):
            for k in range(4):
                expected[b, h, k] = F.conv2d(keyed[b, h, k].view(1, 1, height, width),
                                             la.psi_weight[h:h + 1].detach(), padding=1)[0, 0]
    torch.testing.assert_close(scores, expected.flatten(3), rtol=1e-5, atol=1e-5)


def test_second_la_layer_consumes_the_first_la_layers_scores():
    model = LaViT(arch=SMALL_ARCH, pool_size=3, drop_path_rate=0.).eval()
    va, la1, la2 = (layer.attn for layer in model.stages[1].layers)
    perm = torch.tensor([3, 7, 0, 8, 1, 5, 2, 6, 4])
    with torch.no_grad():
        la1.theta_weight.add_(0.3 * torch.randn_like(la1.theta_weight))
        la2.theta_weight.copy_(torch.eye(9)[perm])
    records = record((va, la1, la2))
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 96))
    va_scores, la1_scores, la2_scores = (records[mod][1] for mod in (va, la1, la2))
    # LA1 = Theta_1 S_VA (Psi and bias at their identity start); LA2 = its key cells permuted.
    torch.testing.assert_close(la1_scores, torch.einsum('kj,bhjn->bhkn', la1.theta_weight, va_scores))
    assert (la1_scores - va_scores).abs().max() > 0.1 * va_scores.abs().max()
    torch.testing.assert_close(la2_scores, la1_scores[:, :, perm], rtol=0, atol=1e-6)


def residual_at_init(prev_scores, hw, out_heads, gamma):
    """gamma * the 2x2 average of the grid, an odd one extended by a copy of its last row/column, over the heads."""
    batch, _, num_cells, _ = prev_scores.shape
    height, width = hw
    grid = prev_scores.view(batch, -1, num_cells, height, width)
    if height % 2:
        grid = torch.cat([grid, grid[..., -1:, :]], dim=-2)
    if width % 2:
        grid = torch.cat([grid, grid[..., -1:]], dim=-1)
    pooled = grid.unflatten(-2, (-1, 2)).unflatten(-1, (-1, 2)).mean(dim=(-3, -1))
    return (gamma * pooled.mean(dim=1)).flatten(2)[:, None].expand(-1, out_heads, -1, -1)


def test_attention_residual_at_init_is_gamma_times_head_mean_of_2x2_average():
    residual = AttentionResidual(in_heads=2, out_heads=5)
    prev = torch.randn(2, 2, 9, 7 * 9)
    with torch.no_grad():
        out = residual(prev, (7, 9))
    assert out.shape == (2, 5, 9, 4 * 5)
    torch.testing.assert_close(out, residual_at_init(prev, (7, 9), 5, 0.1))


def test_attention_residual_adds_the_previous_stage_last_scores_to_the_first_va_layer():
    """Stage 3's first VA scores = its own product + the residual of stage 2's last (LA) scores, 7x9 grid."""
    model = LaViT(arch=SMALL_ARCH, pool_size=3, drop_path_rate=0.).eval()
    perturb_less_attention(model, scale=0.3)
    last_la, first_va = model.stages[1].layers[-1].attn, model.stages[2].layers[0].attn
    records = record((last_la, first_va))
    with torch.no_grad():
        model(torch.rand(1, 3, 56, 72))
        tokens, scores, _ = records[first_va]
        product = first_va(tokens)[1]
    expected = residual_at_init(records[last_la][1], (7, 9), 5, 0.1)
    assert expected.abs().max() > 0.01
    torch.testing.assert_close(scores - product, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('diagonal_form', ['log_ratio', 'difference'])
def test_loss_dp_backpropagates_on_its_own(diagonal_form):
    """loss_dp.backward() alone gives every LA layer's Theta and Psi the gradient of the DP loss; its logged parts.

    The reference is dp_weight times the mean of L_sym + L_diag over the LA
    layers whose grid holds the P x P cells, computed from their captured
    attention: its value and its autograd gradient must match.
    """
    model = LaViT(arch=DP_ARCH, pool_size=3, drop_path_rate=0., dp_weight=0.5, dp_diagonal=diagonal_form).train()
    perturb_less_attention(model)
    records = record(module for module in model.modules() if isinstance(module, LessAttention))
    with collect_dp_loss() as dp:
        model(torch.rand(1, 3, 64, 96))
    loss_dp, logged = dp.loss, dp.logged_terms()
    terms = [reference_dp(attn, tuple(tokens.shape[1:3]), 3, diagonal_form) for tokens, _, attn in records.values()
             if min(tokens.shape[1:3]) >= 3]
    assert len(terms) == 4 and len(records) == 5
    sym, diag = torch.stack(terms).mean(dim=0)
    reference = 0.5 * (sym + diag)
    torch.testing.assert_close(loss_dp.double(), reference, rtol=1e-5, atol=0)
    # The logged parts: unweighted, detached, the means over the same layers.
    assert sym > 1e-3 and diag.abs() > 1e-5
    torch.testing.assert_close(logged['dp_sym'].double(), sym, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(logged['dp_diag'].double(), diag, rtol=1e-4, atol=1e-8)
    assert not logged['dp_sym'].requires_grad and not logged['dp_diag'].requires_grad

    # The last LA layer (stage 4, a 2x3 grid) has no term, and nothing after it has one either.
    params = [param for module in list(records)[:-1] for param in (module.theta_weight, module.psi_weight)]
    expected = torch.autograd.grad(reference, params, retain_graph=True)
    loss_dp.backward()
    for param, grad in zip(params, expected):
        assert grad.abs().max() > 0
        torch.testing.assert_close(param.grad, grad, rtol=1e-3, atol=1e-4 * grad.abs().max().item())


def test_a_collection_sums_the_forwards_with_gradients_inside_it():
    model = LaViT(arch=SMALL_ARCH, pool_size=3, drop_path_rate=0., dp_weight=1.).train()
    perturb_less_attention(model, scale=0.3)
    first, second = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    losses = []
    for x in (first, second):
        with collect_dp_loss() as dp:
            model(x)
        losses.append(dp.loss.detach())
    assert (losses[0] - losses[1]).abs() > 1e-3 * losses[1].abs()
    with collect_dp_loss() as dp:
        model(first)
        model(second)
    torch.testing.assert_close(dp.loss.detach(), losses[0] + losses[1], rtol=1e-6, atol=0)
    # A forward that computes no term (no grad, eval mode: a teacher) adds nothing.
    with collect_dp_loss() as dp:
        model(first)
        with torch.no_grad():
            model(second)
        model.eval()
        model(second)
    torch.testing.assert_close(dp.loss.detach(), losses[0], rtol=1e-6, atol=0)
    assert len(dp.losses) == 1


@pytest.mark.parametrize('hw', [(7, 9), (5, 5), (8, 11), (6, 8)])
def test_attention_residual_of_a_constant_score_map_is_constant(hw):
    """No border bias: every query of the next grid gets the same residual from a constant map, odd sizes too."""
    residual = AttentionResidual(in_heads=2, out_heads=3)
    with torch.no_grad():
        residual.downsample_weight.copy_(torch.rand_like(residual.downsample_weight))
        residual.head_mix.copy_(torch.rand_like(residual.head_mix))
        residual.gamma.copy_(torch.tensor([0.1, 0.5, 2.0]))
        out = residual(torch.full((1, 2, 9, hw[0] * hw[1]), 3.0), hw)
    # Per head: gamma_o * sum_i mix_oi * 3 * sum(w_i) at every (key cell, query).
    expected = residual.gamma * (residual.head_mix * 3 * residual.downsample_weight.sum((1, 2, 3))).sum(1)
    torch.testing.assert_close(out, expected[None, :, None, None].expand_as(out).detach())
