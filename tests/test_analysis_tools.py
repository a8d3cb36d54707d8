"""Smoke tests of tools/benchmark.py and tools/analyze_attention.py: real models, tiny sizes."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from mmlavit.cli import attention_analysis
from mmlavit.cli.demo_data import draw_shapes
from mmlavit.cli.flops import build_backbone, count_flops
from mmlavit.models.attention import LessAttention, VanillaAttention
from tool_calls import run_tool

DEMO_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS='1')


def assert_png(path):
    assert path.is_file(), path
    with open(path, 'rb') as png:
        assert png.read(8) == PNG_SIGNATURE
    assert path.stat().st_size > 5000, f'{path} looks empty'


def test_benchmark_measures_and_writes(tmp_path):
    process = run_tool('tools/benchmark.py', '--models', 'lavit-t', 'pvtv2-b1', '--sizes', '64x64', '--repeats',
                       '1', '--warmup', '1', '--reference', 'lavit-t', '--onnxruntime', '--out-dir', tmp_path,
                       env=ONE_THREAD)
    assert process.returncode == 0, process.stderr[-3000:]
    assert 'Ratios against lavit-t' in process.stdout and '| pvtv2-b1 |' in process.stdout
    assert '| lavit-t | 64x64 |' in process.stdout.split('ONNX Runtime (CPU) beside PyTorch')[1]
    report = json.loads((tmp_path / 'benchmark.json').read_text())

    conditions = report['conditions']
    assert conditions['device'] == 'cpu' and conditions['threads'] == 1
    assert 'VmHWM' in conditions['memory_method']
    rows = report['results']['64x64']
    assert rows['lavit-t']['params_m'] == pytest.approx(10.57, abs=0.01)
    assert rows['pvtv2-b1']['params_m'] == pytest.approx(13.50, abs=0.01)
    for row in rows.values():
        assert row['gflops'] > 0 and row['fwd_ms'] > 0 and row['fwd_bwd_ms'] > 0
        assert len(row['fwd_samples_ms']) == len(row['fwd_bwd_samples_ms']) == 1
        # A training step holds at least the gradients: 4 bytes per parameter.
        assert row['train_peak_mb'] >= 0.9 * row['params_m'] * 1e6 * 4 / 2**20
    # ONNX Runtime runs the LaViT backbones only, in the same interleaved rounds as the forwards.
    assert rows['lavit-t']['onnxruntime_fwd_ms'] > 0 and 'onnxruntime_fwd_ms' not in rows['pvtv2-b1']
    assert len(rows['lavit-t']['onnxruntime_fwd_samples_ms']) == 1
    assert 'onnxruntime' in conditions['onnxruntime']
    ratios = report['ratios']['64x64']
    assert all(value == pytest.approx(1.0) for value in ratios['lavit-t'].values())
    assert ratios['pvtv2-b1']['fwd_ms'] == pytest.approx(rows['pvtv2-b1']['fwd_ms'] / rows['lavit-t']['fwd_ms'])

    stages = report['layers']['lavit-t']['64x64']
    assert [row['stage'] for row in stages] == [1, 2, 3, 4]
    for row in stages:
        assert row['va_layers'] == row['la_layers'] == 1
        assert 0 < row['la_attn_ms'] < row['la_layer_ms'] and 0 < row['va_attn_ms'] < row['va_layer_ms']
        assert row['la_va_layer'] == pytest.approx(row['la_layer_ms'] / row['va_layer_ms'])
    assert_png(tmp_path / 'benchmark.png')
    assert_png(tmp_path / 'layers.png')


def test_analyze_attention_pictures_and_saturation(tmp_path):
    image, _ = draw_shapes(np.random.default_rng(0), 96, 3)
    cv2.imwrite(str(tmp_path / 'shapes.png'), image)
    process = run_tool('tools/analyze_attention.py', DEMO_CONFIG, tmp_path / 'shapes.png',
                       '--compare', 'pvtv2-b1', '--points', '10,10', '60,40', '--out-dir', tmp_path / 'out',
                       env=ONE_THREAD)
    assert process.returncode == 0, process.stderr[-3000:]
    for name in ['attention_stage1', 'attention_stage2', 'attention_stage3', 'attention_stage4',
                 'cell_attention', 'saturation']:
        assert_png(tmp_path / 'out' / f'{name}.png')
    report = json.loads((tmp_path / 'out' / 'saturation.json').read_text())
    assert report['input_shape'] == [1, 3, 96, 96]
    lavit, compare = report['saturation']['lavit'], report['saturation']['compare']
    # LaViT-T: one VA and one LA layer per stage; an untrained LA layer repeats the VA attention.
    assert [[row['kinds'] for row in pairs] for pairs in lavit] == [['VA-LA']] * 4
    assert all(row['cosine'] == pytest.approx(1.0, abs=1e-5) for pairs in lavit for row in pairs)
    assert [len(pairs) for pairs in compare] == [1, 1, 1, 1]
    values = [row['cosine'] for pairs in compare for row in pairs]
    assert all(0 < value <= 1 + 1e-6 for value in values) and min(values) < 0.999


def test_multihead_capture_gives_per_head_probabilities():
    stages = attention_analysis.capture_multihead(build_backbone('pvtv2-b1'), torch.rand(1, 3, 64, 64))
    # PVTv2-b1: 2 layers per stage, heads 1/2/5/8, queries (64/4)^2 ..., keys reduced by sr 8/4/2/1.
    assert [[tuple(attn.shape) for attn in maps] for maps in stages] == [
        [(1, heads, side**2, (side // sr)**2)] * 2
        for heads, side, sr in ((1, 16, 8), (2, 8, 4), (5, 4, 2), (8, 2, 1))]
    for maps in stages:
        for attn in maps:
            torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]))
    assert attention_analysis.consecutive_similarity([stages[0][0]] * 3) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize('less_attention', [False, True])
def test_flop_count_includes_every_attention_product(less_attention):
    channels, heads, cells = 64, 2, 9
    attn = (LessAttention if less_attention else VanillaAttention)(channels, heads, pool_size=3).eval()

    def flops(side):
        inputs = (torch.rand(1, side, side, channels), torch.rand(1, heads, cells, side * side))
        with torch.no_grad():
            return count_flops(attn, inputs).total()

    # Per query: the value product with the output projection folded in (h K C), the pooling's
    # product over the width (P C), and either the query-key product (h K C) or Theta (h K^2) and
    # Psi (h K 3^2). Per grid row: the pooling's product over the height (P^2 C).
    pool = 3
    per_query = heads * cells * channels + pool * channels
    per_query += heads * cells * (cells + 9) if less_attention else heads * cells * channels
    assert attn.folds_projections(8 * 8)
    assert flops(16) - flops(8) == per_query * (16 * 16 - 8 * 8) + pool**2 * channels * (16 - 8)
