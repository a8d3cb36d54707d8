"""loss_dp when a model runs LaViT more than once per step: teachers under no_grad, two views, positional mode."""
import warnings

import pytest
import torch
from mmengine.model import BaseModel

import mmlavit
from mmlavit import LaViT

ARCH = dict(embed_dims=[16, 32, 40, 64], depths=[2, 2, 2, 2], va_layers=[1, 1, 1, 1],
            num_heads=[1, 2, 5, 8], mlp_ratios=[2, 2, 2, 2])


def backbone(seed):
    torch.manual_seed(seed)
    model = LaViT(arch=ARCH, pool_size=3, drop_path_rate=0., dp_weight=1.)
    model.init_weights()
    with torch.no_grad():  # away from the identity start, so that each input gives its own term
        for module in model.modules():
            if isinstance(module, mmlavit.models.attention.LessAttention):
                module.theta_weight.add_(0.3 * torch.randn_like(module.theta_weight))
    return model.train()


def own_term(model, x):
    with mmlavit.collect_dp_loss() as dp:
        model(x)
    return dp.loss.detach()


class TeacherStudent(BaseModel):
    """Distillation as users write it: the teacher runs in train mode under no_grad."""

    def __init__(self):
        super().__init__()
        self.teacher, self.student = backbone(0), backbone(1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        with torch.no_grad():
            targets = self.teacher(inputs)
        feats = self.student(inputs)
        return dict(loss_distill=sum((f - t).pow(2).mean() for f, t in zip(feats, targets)))


class TwoViews(BaseModel):
    """One backbone on two views of a batch in one forward (contrastive, multi-crop)."""

    def __init__(self):
        super().__init__()
        self.backbone = backbone(2)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        first, second = inputs
        return dict(loss_views=sum(a.mean() - b.mean() for a, b in zip(self.backbone(first), self.backbone(second))))


def test_a_teacher_under_no_grad_adds_nothing():
    model = TeacherStudent()
    x = torch.rand(2, 3, 64, 96)
    student_term, teacher_term = own_term(model.student, x), own_term(model.teacher, x)
    assert (student_term - teacher_term).abs() > 1e-3 * student_term.abs()
    mmlavit.attach_dp_loss(model)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        losses = model(x, mode='loss')
    torch.testing.assert_close(losses['loss_dp'].detach(), student_term)


def test_two_views_add_both_terms():
    model = TwoViews()
    first, second = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    first_term, second_term = own_term(model.backbone, first), own_term(model.backbone, second)
    assert (first_term - second_term).abs() > 1e-3 * first_term.abs()
    mmlavit.attach_dp_loss(model)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no "nothing consumed" for the first view
        losses = model((first, second), mode='loss')
        losses['loss_dp'].backward()
    torch.testing.assert_close(losses['loss_dp'].detach(), first_term + second_term)
    # The next step starts from zero.
    losses = model((first, first), mode='loss')
    torch.testing.assert_close(losses['loss_dp'].detach(), 2 * first_term)


def test_logged_parts_are_the_mean_over_the_views():
    """dp_sym, dp_diag: L_sym and L_diag averaged over the views, unweighted, not summed by parse_losses."""
    model = TwoViews()
    model.backbone.dp_weight = 0.5
    views = (torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96))
    parts = []
    for view in views:
        with mmlavit.collect_dp_loss() as dp:
            model.backbone(view)
        loss, terms = dp.loss, dp.logged_terms()
        torch.testing.assert_close(loss.detach(), 0.5 * (terms['dp_sym'] + terms['dp_diag']))
        parts.append(terms)
    assert (parts[0]['dp_sym'] - parts[1]['dp_sym']).abs() > 1e-3 * parts[0]['dp_sym']
    mmlavit.attach_dp_loss(model)
    losses = model(views, mode='loss')
    for key in ('dp_sym', 'dp_diag'):
        torch.testing.assert_close(losses[key], (parts[0][key] + parts[1][key]) / 2)
    total, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(total, losses['loss_views'] + losses['loss_dp'])
    assert log_vars['dp_diag'] == pytest.approx(losses['dp_diag'].item())


@pytest.mark.parametrize('call', ['keyword', 'positional'])
def test_mode_is_found_by_keyword_or_position(call):
    model = TwoViews()
    views = (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    expected = own_term(model.backbone, views[0]) + own_term(model.backbone, views[1])
    mmlavit.attach_dp_loss(model)
    losses = model(views, mode='loss') if call == 'keyword' else model(views, None, 'loss')
    torch.testing.assert_close(losses['loss_dp'].detach(), expected)


def test_removed_collection_adds_nothing():
    model = TwoViews()
    views = (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    collection = mmlavit.attach_dp_loss(model)
    collection.remove()
    with pytest.warns(UserWarning, match='no DP loss collection is open'):
        losses = model(views, mode='loss')
    assert 'loss_dp' not in losses
