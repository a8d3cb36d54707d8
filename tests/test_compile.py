"""torch.compile of LaViT: dynamo captures the backbone as one graph without breaks, in eval and train mode;
a shipped config trains with mmengine's compile."""
import re

import pytest
import torch

from mmlavit.cli.demo_data import make_coco_shapes
from mmlavit.models.lavit import LaViT
from tool_calls import run_tool

#: Two sizes of one dynamic graph: different heights and widths, and on the same side of every size
#: threshold of the graph (which layers fold their projections, which add a DP term, and torch's CPU
#: convolution backend choice, which guards on each depthwise convolution's C x H x W), so that a
#: dynamic=True compilation serves both without recompiling.
SIZES = ((96, 128), (64, 192))
DEMO_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'


def lavit_t(train):
    torch.manual_seed(0)
    return LaViT(arch='t', drop_path_rate=0.).train(train)


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_one_graph_without_breaks(train):
    model = lavit_t(train)
    for size in SIZES:
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(model)(torch.rand(1, 3, *size))
        model.pop_dp_loss()
        breaks = [f'{reason.reason.splitlines()[0]} at {reason.user_stack[-1].filename}:'
                  f'{reason.user_stack[-1].lineno}' for reason in explanation.break_reasons]
        assert explanation.graph_break_count == 0, breaks
        assert explanation.graph_count == 1


def test_shipped_config_trains_with_mmengine_compile(tmp_path):
    """tools/train.py with mmengine's ``compile``: the Runner compiles the demo Mask R-CNN's whole
    train_step, the optimizer step included, whose param groups PlainParamGroupsHook (in every LaViT
    config) makes traceable (without it dynamo fails on mmengine's ConfigDict groups); 2 iterations
    train and a checkpoint is written.

    The eager backend: dynamo captures what inductor would compile, without inductor's code generation,
    which takes many minutes for a whole detector on a CPU.
    """
    make_coco_shapes(str(tmp_path / 'shapes'), num_train=2, num_val=1, seed=1)
    work_dir = tmp_path / 'work'
    process = run_tool('tools/train.py', DEMO_CONFIG, '--work-dir', work_dir, '--cfg-options',
                       f'data_root={tmp_path / "shapes"}/', 'compile.backend=eager', 'train_cfg.max_epochs=1',
                       'train_dataloader.batch_size=1', 'default_hooks.logger.interval=1',
                       'default_hooks.checkpoint.interval=1')
    log = process.stdout + process.stderr
    assert process.returncode == 0, log[-3000:]
    assert 'Model has been "compiled"' in log
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\].*loss_dp: ', log), log[-3000:]  # 2 images, batch 1
    assert (work_dir / 'epoch_1.pth').is_file()
