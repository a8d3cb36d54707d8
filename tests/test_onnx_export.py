"""ONNX export with dynamic sizes: the grid operations, then tools/export_onnx.py on the demo configs.

Every export is checked with ONNX Runtime against PyTorch at sizes other
than the traced one (odd, non-square, smaller and larger), where a pooling
window or a padding frozen at the export size gives wrong numbers or fails.
Small backbones (the demo configs with fewer LaViT layers) keep them fast.
"""
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlavit.cli.onnx_export import export_onnx, main, onnxruntime_session
from mmlavit.cli.tool_process import REPO
from mmlavit.models import grid
from mmlavit.models.grid import adaptive_avg_pool, pad_to_multiple
from mmlavit.models.lavit import LaViT

#: Odd, non-square, smaller and larger than the 7 x 7 cells, and a multiple of 7 and of 4.
SIZES = [(1, 1), (3, 5), (7, 7), (13, 6), (8, 28), (29, 41), (56, 56), (97, 161)]
#: LaViT-T's widths with one VA and one LA layer in the first stage and one VA layer in each later one.
SMALL_ARCH = dict(embed_dims=[64, 128, 320, 512], depths=[2, 1, 1, 1], va_layers=[1, 1, 1, 1],
                  num_heads=[1, 2, 5, 8], mlp_ratios=[8, 8, 4, 4])
#: One VA layer per stage, for the whole-model exports (the backbone test covers the LA layer).
VA_ARCH = dict(SMALL_ARCH, depths=[1, 1, 1, 1])


def padded(maps, multiple):
    """Bottom/right zero padding to a multiple, written out."""
    height, width = maps.shape[-2:]
    return F.pad(maps, (0, -width % multiple, 0, -height % multiple))


@pytest.mark.parametrize('channels_last', [False, True])
def test_adaptive_avg_pool_is_torch_pooling_at_many_sizes(channels_last):
    for height, width in SIZES:
        maps = torch.randn(2, 5, height, width, dtype=torch.float64)
        if channels_last:
            maps = maps.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        maps.requires_grad_()
        pooled = adaptive_avg_pool(maps, 7)
        expected = F.adaptive_avg_pool2d(maps, 7)
        torch.testing.assert_close(pooled, expected, rtol=1e-12, atol=1e-12)
        grad = torch.randn_like(expected)
        torch.testing.assert_close(torch.autograd.grad(pooled, maps, grad)[0],
                                   torch.autograd.grad(expected, maps, grad)[0], rtol=1e-12, atol=1e-12)


def test_adaptive_avg_pool_keeps_the_dtype_under_autocast():
    maps = torch.randn(1, 4, 13, 9)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        pooled = adaptive_avg_pool(maps, 3)
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(maps, 3))


def test_pad_to_multiple_pads_bottom_right_and_skips_aligned_grids():
    for height, width in SIZES:
        maps = torch.randn(1, 3, height, width)
        for multiple in (2, 4):
            assert torch.equal(pad_to_multiple(maps, multiple), padded(maps, multiple))
    aligned = torch.randn(1, 3, 8, 12)
    assert pad_to_multiple(aligned, 4) is aligned


class GridOps(nn.Module):
    """The grid operations of LaViT on an image batch, both pooling layouts."""

    def forward(self, image):
        channels_last = image.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        return pad_to_multiple(image, 4), adaptive_avg_pool(image, 7), adaptive_avg_pool(channels_last, 7)


@pytest.mark.slow
def test_grid_ops_exported_at_one_size_are_right_at_others(tmp_path):
    """Traced at 28x56 (a multiple of 4 and 7: no padding, equal windows), run at sizes that need both."""
    path = tmp_path / 'grid.onnx'
    export_onnx(GridOps(), path, shape=(28, 56), output_names=['padded', 'pooled', 'pooled_cl'])
    session = onnxruntime_session(path)
    for height, width in [(28, 56), (29, 41), (13, 6), (5, 3), (97, 161)]:
        image = torch.randn(1, 3, height, width)
        outputs = session.run(None, {'image': image.numpy()})
        np.testing.assert_array_equal(outputs[0], padded(image, 4).numpy())
        for pooled in outputs[1:]:
            np.testing.assert_allclose(pooled, F.adaptive_avg_pool2d(image, 7).numpy(), rtol=1e-5, atol=1e-6)


def small_config(tmp_path, config, arch=SMALL_ARCH):
    """A config inheriting ``config`` whose LaViT has fewer layers."""
    path = tmp_path / 'small_config.py'
    arch = dict(arch, _delete_=True)  # the base's arch is a name ('t')
    path.write_text(f'_base_ = {str(REPO / config)!r}\nmodel = dict(backbone=dict(arch={arch!r}))\n')
    return str(path)


def run_export(capsys, *args):
    """tools/export_onnx.py in this process; returns its report (stdout)."""
    main([str(arg) for arg in args])
    return capsys.readouterr().out


def check_report(report, sizes, output_names):
    """Every (size, output) has a row within the tolerance, and the tool says so."""
    rows = [line.strip('| ').split(' | ') for line in report.splitlines() if re.match(r'\| \d+x\d+ \|', line)]
    checked = {(row[0], row[2]) for row in rows if row[-1] == 'yes'}
    assert checked == {(size, name) for size in sizes for name in output_names}, report
    assert f'All {len(rows)} outputs within the tolerance' in report


def assert_dynamic_input(path):
    """The graph declares batch, height and width symbolic, channels fixed."""
    image = onnx.load(str(path), load_external_data=False).graph.input[0]
    dims = image.type.tensor_type.shape.dim
    assert [bool(dim.dim_param) for dim in dims] == [True, False, True, True], dims
    assert dims[1].dim_value == 3


@pytest.mark.slow
def test_export_backbone_right_at_every_size(tmp_path, capsys):
    path = tmp_path / 'backbone.onnx'
    report = run_export(capsys, small_config(tmp_path, 'configs/demo/mask_rcnn_lavit_t_shapes.py'), '--part',
                        'backbone', '--out', path, '--check-sizes', '161x97', '32x32', '33x65', '256x200')
    check_report(report, ['224x288', '161x97', '32x32', '33x65', '256x200'],
                 ['stage1', 'stage2', 'stage3', 'stage4'])
    assert_dynamic_input(path)


@pytest.mark.slow
def test_export_segmentor_logits_at_the_input_size(tmp_path, capsys):
    """UperNet's pyramid pooling is adaptive pooling too: exported through the same averaging matrices."""
    path = tmp_path / 'segmentor.onnx'
    config = small_config(tmp_path, 'configs/demo/upernet_lavit_t_shapes_ade.py', VA_ARCH)
    report = run_export(capsys, config, '--out', path, '--shape', '96x128', '--check-sizes', '161x97', '128x171')
    check_report(report, ['96x128', '161x97', '128x171'], ['seg_logits'])
    assert '| 161x97 | 1 | seg_logits | 1x4x161x97 |' in report
    assert_dynamic_input(path)


@pytest.mark.slow
def test_export_two_stage_detector_features(tmp_path, capsys):
    path = tmp_path / 'detector.onnx'
    config = small_config(tmp_path, 'configs/demo/mask_rcnn_lavit_t_shapes.py', VA_ARCH)
    report = run_export(capsys, config, '--out', path, '--check-sizes', '161x97', '200x333')
    check_report(report, ['224x288', '161x97', '200x333'], [f'neck_{level}' for level in range(5)])
    assert 'the RoI stages need NMS and RoIAlign' in report
    assert_dynamic_input(path)


@pytest.mark.slow
@pytest.mark.parametrize('config,part,check_sizes,outputs', [
    ('configs/demo/mask_rcnn_lavit_t_shapes.py', 'backbone', ['161x97', '256x200'],
     ['stage1', 'stage2', 'stage3', 'stage4']),
    ('configs/retinanet_lavit-t_fpn_1x_coco.py', 'model', ['161x97', '200x333'],
     [f'{name}_{level}' for name in ('cls_scores', 'bbox_preds') for level in range(5)]),
    ('configs/demo/mask_rcnn_lavit_t_shapes.py', 'model', ['161x97', '200x333'],
     [f'neck_{level}' for level in range(5)]),
    ('configs/demo/upernet_lavit_t_shapes_ade.py', 'model', ['161x97', '128x171'], ['seg_logits']),
], ids=['backbone', 'retinanet', 'mask-rcnn', 'upernet'])
def test_torchscript_export_as_mmdeploy_runs_it(config, part, check_sizes, outputs, tmp_path, capsys):
    """torch.onnx.export(..., dynamo=False), the exporter mmdeploy 1.3 calls, with an LA layer and the attention
    residual (the per-head convolutions whose sizes it must not record as values): right at two other sizes."""
    path = tmp_path / 'model.onnx'
    report = run_export(capsys, small_config(tmp_path, config), '--part', part, '--exporter', 'torchscript',
                        '--out', path, '--check-sizes', *check_sizes)
    check_report(report, ['224x288', *check_sizes], outputs)
    assert 'opset 17' in report
    assert_dynamic_input(path)


@pytest.mark.slow
def test_missing_onnxruntime_says_how_to_install_it(tmp_path):
    """Without the deploy extra, the benchmark still imports and the export stops before exporting, naming it."""
    probe = ('import sys; sys.modules["onnxruntime"] = None\n'
             'import mmlavit.cli.benchmark\n'
             'from mmlavit.cli.errors import exit_on_user_error\n'
             'from mmlavit.cli.onnx_export import main\n'
             'with exit_on_user_error():\n'
             f'    main(["configs/demo/mask_rcnn_lavit_t_shapes.py", "--out", {str(tmp_path / "x.onnx")!r}])\n')
    process = subprocess.run([sys.executable, '-c', probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 1, process.stderr[-2000:]
    assert 'error: onnxruntime is not installed' in process.stderr and 'pip install -e ".[deploy]"' in process.stderr
    assert 'Traceback' not in process.stderr and not (tmp_path / 'x.onnx').exists()


@pytest.mark.slow
def test_static_size_export_leaves_later_forwards_untouched():
    """torch.export at a fixed size builds its averaging matrices as fake tensors: none stays in the cache."""
    torch.manual_seed(0)
    model = LaViT(arch='t').eval()
    image = torch.rand(1, 3, 136, 168)
    with torch.no_grad():
        expected = model(image)
        grid._cached_averaging_matrix.cache_clear()  # so that the export is the first to ask for each size
        torch.export.export(model, (image, ), strict=False)
        outputs = model(image)
    for output, reference in zip(outputs, expected):
        torch.testing.assert_close(output, reference)
