"""One forward or training step of a backbone, as the benchmark times and measures it."""
import contextlib

import torch

from mmlavit.models.dp_collection import collect_dp_loss


def synchronize(device):
    """Waits for the device's queued work (a no-op on CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def autocast(device, amp):
    """float16 autocast on ``device`` when ``amp`` (the benchmark allows it on CUDA only), else nothing."""
    return torch.autocast(device.type, dtype=torch.float16) if amp else contextlib.nullcontext()


def forward(model, inputs, device, amp):
    """An inference forward (no grad)."""
    with torch.no_grad(), autocast(device, amp):
        model(inputs)


def uncompiled(model):
    """The module itself, or the one that a ``torch.compile`` wrapper runs."""
    return getattr(model, '_orig_mod', model)


def training_step(model, inputs, device, amp):
    """Forward and backward of a train-mode model (eager or compiled); LaViT's DP loss joins the loss."""
    with autocast(device, amp), collect_dp_loss() as dp:
        loss = sum(out.float().mean() for out in model(inputs))
        if dp.loss is not None:
            loss = loss + dp.loss
    loss.backward()
    model.zero_grad(set_to_none=True)


def set_mode(models, train):
    """Train or eval mode for every model of a dict."""
    for model in models.values():
        model.train(train)  # not chained: mmdet's Swin.train() returns None
