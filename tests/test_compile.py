"""torch.compile of LaViT: dynamo captures the backbone as one graph without breaks, in eval and train mode;
a shipped config trains with mmengine's compile."""
import re

import pytest
import torch

from conftest import CLS_DEMO, succeeded
from mmlavit.cli.tool_process import REPO
from mmlavit.models import LaViT, collect_dp_loss
from tool_calls import call_tool

#: Two sizes of one dynamic graph: different heights and widths, and on the same side of every size
#: threshold of the graph (which layers fold their projections, which add a DP term, and torch's CPU
#: convolution backend choice, which guards on each depthwise convolution's C x H x W), so that a
#: dynamic=True compilation serves both without recompiling.
SIZES = ((96, 128), (64, 192))


def lavit_t(train):
    torch.manual_seed(0)
    return LaViT(arch='t', drop_path_rate=0.).train(train)


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_one_graph_without_breaks(train):
    model = lavit_t(train)
    for size in SIZES:
        torch._dynamo.reset()
        with collect_dp_loss() as dp:  # as DPLossHook opens one around a training forward
            explanation = torch._dynamo.explain(model)(torch.rand(1, 3, *size))
        assert (dp.loss is not None) == train
        breaks = [f'{reason.reason.splitlines()[0]} at {reason.user_stack[-1].filename}:'
                  f'{reason.user_stack[-1].lineno}' for reason in explanation.break_reasons]
        assert explanation.graph_break_count == 0, breaks
        assert explanation.graph_count == 1


@pytest.mark.slow
def test_shipped_config_trains_with_mmengine_compile(imagenet_shapes, tmp_path):
    """tools/train.py with mmengine's ``compile``: the Runner compiles the demo classifier's whole train_step,
    the optimizer step included, whose param groups PlainParamGroupsHook, added beside the config's hooks as
    docs/performance.md says, makes traceable (without it dynamo fails on mmengine's ConfigDict groups); 2
    iterations train and a checkpoint is written.

    The eager backend: dynamo captures what inductor would compile, without inductor's code generation, which
    takes minutes on a CPU. A constant learning rate: each new lr of a warm-up is a recompilation.
    """
    config = tmp_path / 'compiled_demo.py'
    config.write_text(f"_base_ = {str(REPO / CLS_DEMO)!r}\ncompile = dict(backend='eager')\n"
                      "custom_hooks = [*_base_.custom_hooks, dict(type='mmlavit.PlainParamGroupsHook')]\n"
                      "param_scheduler = []\n")
    work_dir = tmp_path / 'work'
    try:
        log = succeeded(call_tool('tools/train.py', config, '--work-dir', work_dir, '--cfg-options',
                                  f'data_root={imagenet_shapes}', 'train_cfg.max_epochs=1',
                                  'train_dataloader.batch_size=12', 'default_hooks.logger.interval=1',
                                  'default_hooks.checkpoint.interval=1', 'val_cfg=None', 'val_dataloader=None',
                                  'val_evaluator=None'))
    finally:
        torch._dynamo.reset()
    assert 'Model has been "compiled"' in log
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\].*loss_dp: ', log), log[-3000:]  # 24 images, batch 12
    assert (work_dir / 'epoch_1.pth').is_file()
