"""torch.compile of LaViT: dynamo captures the backbone as one graph without breaks, in eval and train mode."""
import pytest
import torch

from mmlavit.models.lavit import LaViT

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
        explanation = torch._dynamo.explain(model)(torch.rand(1, 3, *size))
        model.pop_dp_loss()
        breaks = [f'{reason.reason.splitlines()[0]} at {reason.user_stack[-1].filename}:'
                  f'{reason.user_stack[-1].lineno}' for reason in explanation.break_reasons]
        assert explanation.graph_break_count == 0, breaks
        assert explanation.graph_count == 1
