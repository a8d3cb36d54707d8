"""MixFFN's lean training path against the plain computation: outputs, gradients, memory, checkpoint, DDP."""
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from mmlavit import LaViT, collect_dp_loss
from mmlavit.models.mixffn import DWConvGELULinear, MixFFN

FUSED = 'DWConvGELULinearBackward'


def plain_mixffn(ffn, x):
    """nn.Linear -> depthwise conv -> activation -> nn.Linear, written out."""
    hidden = F.linear(x, ffn.fc1.weight, ffn.fc1.bias)
    hidden = F.conv2d(hidden.permute(0, 3, 1, 2), ffn.dwconv.weight, ffn.dwconv.bias, padding=1,
                      groups=hidden.shape[-1]).permute(0, 2, 3, 1)
    hidden = F.dropout(ffn.act(hidden), ffn.drop.p, ffn.training)
    return F.dropout(F.linear(hidden, ffn.fc2.weight, ffn.fc2.bias), ffn.drop.p, ffn.training)


def outputs_and_grads(module, forward, inputs, grad_out=None):
    """The output and the gradients of the input and of every parameter of ``module``."""
    module.zero_grad(set_to_none=True)
    inputs = inputs.detach().requires_grad_()
    out = forward(inputs)
    out.backward(torch.ones_like(out) if grad_out is None else grad_out.to(out.dtype))
    grads = {name: param.grad for name, param in module.named_parameters()}
    return out, dict(grads, input=inputs.grad)


def assert_same(result, expected, **tolerances):
    (out, grads), (expected_out, expected_grads) = result, expected
    torch.testing.assert_close(out, expected_out, **tolerances)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert grad is not None and grad.dtype == expected_grads[name].dtype, name
        torch.testing.assert_close(grad, expected_grads[name], msg=name, **tolerances)


@pytest.mark.parametrize('shape,approximate', [((2, 7, 11), 'none'), ((1, 13, 6), 'tanh')])
def test_training_path_matches_plain_computation(shape, approximate):
    ffn = MixFFN(16, 8, act_cfg=dict(type='GELU', approximate=approximate)).train()
    x, grad_out = torch.randn(*shape, 16), torch.randn(*shape, 16)
    result = outputs_and_grads(ffn, ffn, x, grad_out)
    assert type(result[0].grad_fn).__name__ == FUSED
    # DDP's gradient buckets expect each gradient in its parameter's strides.
    assert all(result[1][name].stride() == param.stride() for name, param in ffn.named_parameters())
    assert_same(result, outputs_and_grads(ffn, lambda x: plain_mixffn(ffn, x), x, grad_out))


def saved_hidden_maps(forward, x, hidden_numel):
    """How many distinct hidden-map-sized storages autograd keeps for the backward pass."""
    storages = set()

    def pack(tensor):
        if tensor.numel() == hidden_numel:
            storages.add(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward(x)
    return len(storages)


def test_training_path_keeps_one_hidden_map():
    ffn = MixFFN(16, 8).train()
    x = torch.randn(2, 7, 11, 16, requires_grad=True)
    hidden_numel = 2 * 7 * 11 * 128
    assert saved_hidden_maps(lambda x: plain_mixffn(ffn, x), x, hidden_numel) == 3
    assert saved_hidden_maps(ffn, x, hidden_numel) == 1


AUTOCAST = [('cpu', torch.bfloat16)]
if torch.cuda.is_available():
    AUTOCAST.append(('cuda', torch.float16))


@pytest.mark.parametrize('device,dtype', AUTOCAST)
def test_autocast_matches_plain_computation(device, dtype):
    ffn = MixFFN(16, 8).train().to(device)
    x, grad_out = torch.randn(2, 9, 5, 16, device=device), torch.randn(2, 9, 5, 16, device=device)

    def under_autocast(forward):
        def run(x):
            with torch.autocast(device, dtype=dtype):
                return forward(x)
        return run

    result = outputs_and_grads(ffn, under_autocast(ffn), x, grad_out)
    assert result[0].dtype == dtype and type(result[0].grad_fn).__name__ == FUSED
    expected = outputs_and_grads(ffn, under_autocast(lambda x: plain_mixffn(ffn, x)), x, grad_out)
    assert_same(result, expected, rtol=2e-2, atol=2e-2)


def test_dropout_inference_and_other_activations_take_the_plain_path(monkeypatch):
    def not_plain(*args):
        raise AssertionError('took the recomputing path')

    monkeypatch.setattr(DWConvGELULinear, 'apply', not_plain)
    x = torch.randn(2, 7, 11, 16)
    dropout = MixFFN(16, 8, drop_rate=0.3).train()
    torch.manual_seed(1)
    result = outputs_and_grads(dropout, dropout, x)
    torch.manual_seed(1)
    assert_same(result, outputs_and_grads(dropout, lambda x: plain_mixffn(dropout, x), x))

    relu = MixFFN(16, 8, act_cfg=dict(type='ReLU')).train()
    assert_same(outputs_and_grads(relu, relu, x), outputs_and_grads(relu, lambda x: plain_mixffn(relu, x), x))

    ffn = MixFFN(16, 8).eval()
    assert_same(outputs_and_grads(ffn, ffn, x), outputs_and_grads(ffn, lambda x: plain_mixffn(ffn, x), x))
    with torch.no_grad():
        torch.testing.assert_close(ffn.train()(x), plain_mixffn(ffn, x))


def test_state_dict_names_and_shapes_unchanged():
    shapes = {'fc1.weight': (128, 16), 'fc1.bias': (128, ), 'dwconv.weight': (128, 1, 3, 3),
              'dwconv.bias': (128, ), 'fc2.weight': (16, 128), 'fc2.bias': (16, )}
    saved = {name: torch.randn(shape) for name, shape in shapes.items()}
    ffn = MixFFN(16, 8)
    assert {name: tuple(value.shape) for name, value in ffn.state_dict().items()} == shapes
    ffn.load_state_dict(saved)
    for name, value in ffn.state_dict().items():
        assert torch.equal(value, saved[name]), name


@pytest.mark.parametrize('with_cp', [False, True])
def test_lavit_matches_plain_mixffn(with_cp, monkeypatch):
    model = LaViT(arch='t', drop_path_rate=0., with_cp=with_cp).train()
    x = torch.rand(2, 3, 67, 93)
    paths = []
    model.stages[0].layers[0].ffn.register_forward_hook(
        lambda module, args, out: paths.append(type(out.grad_fn).__name__))

    def loss(x):
        with collect_dp_loss() as dp:
            outs = model(x)
        # Summed, not averaged: gradients far above assert_close's absolute tolerance.
        return sum((out ** 2).sum() for out in outs) + dp.loss

    result = outputs_and_grads(model, loss, x)
    with monkeypatch.context() as patch:
        patch.setattr(MixFFN, 'forward', plain_mixffn)
        expected = outputs_and_grads(model, loss, x)
    assert paths[0] == FUSED and paths[-1] != FUSED
    assert_same(result, expected)


def _ddp_rank(rank, init_file, state, inputs, grad_outs):
    """One rank of a 2-process gloo DDP step of a MixFFN; returns its (averaged) gradients."""
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    try:
        ffn = MixFFN(16, 8).train()
        ffn.load_state_dict(state)
        ddp = DistributedDataParallel(ffn)  # held: its reducer all-reduces during backward
        ddp(inputs[rank]).backward(grad_outs[rank])
        # Freed before the group: a gloo group whose last reference DDP's reducer drops is
        # destroyed with the GIL held, and can deadlock on a worker thread that needs the GIL.
        del ddp
    finally:
        dist.destroy_process_group()
    return {name: param.grad for name, param in ffn.named_parameters()}


def test_two_process_ddp_averages_the_plain_gradients(tmp_path):
    ffn = MixFFN(16, 8).train()
    inputs, grad_outs = torch.randn(2, 1, 9, 7, 16), torch.randn(2, 1, 9, 7, 16)
    expected = {name: torch.zeros_like(param) for name, param in ffn.named_parameters()}
    for x, grad_out in zip(inputs, grad_outs):
        _, grads = outputs_and_grads(ffn, lambda x: plain_mixffn(ffn, x), x, grad_out)
        for name in expected:
            expected[name] += grads[name] / len(inputs)
    # This process is rank 0; one spawned peer is rank 1.
    args = (tmp_path / 'store', ffn.state_dict(), inputs, grad_outs)
    peer = mp.get_context('spawn').Process(target=_ddp_rank, args=(1, *args), daemon=True)
    peer.start()
    grads = _ddp_rank(0, *args)
    peer.join(timeout=120)
    assert peer.exitcode == 0
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], msg=name)
