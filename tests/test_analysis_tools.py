"""Smoke tests of tools/benchmark.py and tools/analyze_attention.py: real models, tiny sizes."""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from mmdet.models.backbones.swin import WindowMSA

from mmlavit.cli import attention_analysis, benchmark
from mmlavit.cli.demo_data import draw_shapes
from mmlavit.cli.flops import ATTENTION, build_backbone, count_flops
from mmlavit.cli.steps import forward
from mmlavit.models.attention import LessAttention, VanillaAttention
from mmlavit.models.lavit import LaViT
from tool_calls import call_tool, run_tool

DEMO_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS='1')


def assert_png(path):
    assert path.is_file(), path
    with open(path, 'rb') as png:
        assert png.read(8) == PNG_SIGNATURE
    assert path.stat().st_size > 5000, f'{path} looks empty'


@pytest.mark.slow
def test_benchmark_measures_and_writes(tmp_path):
    """One run with --onnxruntime and --compile: the aot_eager backend traces forward and backward and runs them
    as graphs without generating code, so that it takes about a minute (test_compile.py compiles LaViT with
    inductor)."""
    process = run_tool('tools/benchmark.py', '--models', 'lavit-t', 'pvtv2-b1', '--sizes', '64x64', '--repeats',
                       '1', '--warmup', '1', '--reference', 'lavit-t', '--onnxruntime', '--compile',
                       '--compile-backend', 'aot_eager', '--out-dir', tmp_path, env=ONE_THREAD)
    assert process.returncode == 0, process.stderr[-3000:]
    assert 'Ratios against lavit-t' in process.stdout and '| pvtv2-b1 |' in process.stdout
    assert '| lavit-t | 64x64 |' in process.stdout.split('ONNX Runtime (CPU) beside PyTorch')[1]
    report = json.loads((tmp_path / 'benchmark.json').read_text())

    conditions = report['conditions']
    assert conditions['device'] == 'cpu' and conditions['threads'] == 1
    assert 'VmHWM' in conditions['memory_method']
    rows = report['results']['64x64']
    for name, row in rows.items():
        assert row['params_m'] == pytest.approx(sum(p.numel() for p in build_backbone(name).parameters()) / 1e6)
    assert rows['pvtv2-b1']['params_m'] == pytest.approx(13.50, abs=0.01)  # as mmdet's PVTv2-b1
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
    arch = LaViT.arch_zoo['t']
    assert [(row['stage'], row['va_layers'], row['la_layers']) for row in stages] == [
        (index + 1, va, depth - va) for index, (va, depth) in enumerate(zip(arch['va_layers'], arch['depths']))]
    for row in stages:
        assert 0 < row['va_attn_ms'] < row['va_layer_ms']
        if row['la_layers']:
            assert 0 < row['la_attn_ms'] < row['la_layer_ms']
            assert row['la_va_layer'] == pytest.approx(row['la_layer_ms'] / row['va_layer_ms'])
    assert_png(tmp_path / 'benchmark.png')
    assert_png(tmp_path / 'layers.png')

    # Compiled beside eager, in the same rounds.
    table = process.stdout.split('### torch.compile beside eager')[1]
    assert '| lavit-t | 64x64 | forward |' in table and '| pvtv2-b1 | 64x64 | fwd+bwd |' in table
    assert "dynamic=False, backend='aot_eager'" in conditions['compile']
    compiled_ratios = report['compiled_ratios']['64x64']
    for name, row in rows.items():
        compiled = row['compiled']
        for step in ('fwd', 'fwd_bwd'):
            assert compiled[f'{step}_error'] is None
            assert compiled[f'{step}_compile_s'] > 0 and len(compiled[f'{step}_samples_ms']) == 1
            assert compiled[f'{step}_ms'] == min(compiled[f'{step}_samples_ms']) > 0
            assert compiled_ratios[name][f'{step}_ms'] == pytest.approx(compiled[f'{step}_ms'] / row[f'{step}_ms'])
            assert compiled_ratios[name][f'{step}_ms_vs_reference'] == pytest.approx(
                compiled[f'{step}_ms'] / rows['lavit-t']['compiled'][f'{step}_ms'])


def test_benchmark_reports_a_model_that_does_not_compile():
    def no_kernels(graph, example_inputs):
        raise RuntimeError('no kernel for this graph\nmore detail')

    models = {'lavit-t': torch.nn.Linear(4, 2), 'swin-t': torch.nn.Linear(4, 2)}
    compiled = {'lavit-t (compiled)': torch.compile(models['lavit-t'], dynamic=False, backend='eager'),
                'swin-t (compiled)': torch.compile(models['swin-t'], dynamic=False, backend=no_kernels)}
    samples, seconds, errors = benchmark.time_step(models, compiled, forward, torch.rand(1, 4), torch.device('cpu'),
                                                   False, warmup=0, repeats=2)
    assert set(samples) == {'lavit-t', 'swin-t', 'lavit-t (compiled)'} and set(seconds) == {'lavit-t (compiled)'}
    assert errors == {'swin-t (compiled)': 'no_kernels: RuntimeError: no kernel for this graph'}

    steps = {step: samples for step, _, _ in benchmark.STEPS}
    results = {'4': {name: dict(fwd_ms=min(samples[name]), fwd_bwd_ms=min(samples[name]),
                                compiled=benchmark.compiled_row(benchmark.compiled_name(name), steps,
                                                                {step: seconds for step in steps},
                                                                {step: errors for step in steps}))
                     for name in models}}
    report = dict(reference='lavit-t', results=results,
                  compiled_ratios=benchmark.compiled_ratios(results, 'lavit-t'))
    assert report['compiled_ratios']['4']['swin-t'] == dict(fwd_ms=None, fwd_ms_vs_reference=None, fwd_bwd_ms=None,
                                                          fwd_bwd_ms_vs_reference=None)
    lines = benchmark.format_compiled(report)
    assert any(line.startswith('| swin-t | 4 | forward | - |') and
               'not compiled: no_kernels: RuntimeError: no kernel for this graph |' in line for line in lines)
    assert any(line.startswith('| lavit-t | 4 | fwd+bwd |') and line.endswith('| 1.00 |') for line in lines)


@pytest.mark.slow
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
    # LaViT-T: one VA and one LA layer in stages 1-3, two VA layers in stage 4; an untrained LA layer repeats the
    # VA attention, a second VA layer computes its own.
    assert [[row['kinds'] for row in pairs] for pairs in lavit] == [['VA-LA']] * 3 + [['VA-VA']]
    assert all(row['cosine'] == pytest.approx(1.0, abs=1e-5) for pairs in lavit[:3] for row in pairs)
    assert lavit[3][0]['cosine'] < 0.999
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


@pytest.mark.parametrize('less_attention,side', [(False, 3), (True, 3), (False, 8), (True, 8)])
def test_attention_products_counted_apart(less_attention, side):
    channels, heads, cells = 64, 2, 9
    attn = (LessAttention if less_attention else VanillaAttention)(channels, heads, pool_size=3).eval()
    num_queries = side * side
    inputs = (torch.rand(1, side, side, channels), torch.rand(1, heads, cells, num_queries))
    with torch.no_grad():
        analyzer = count_flops(attn, inputs)
    # An attention product multiplies the N queries' scores over the K keys with C channels: N x K x C
    # multiply-adds (h heads of C / h). A VA layer has two (query-key, attention-value), an LA layer one
    # (attention-value; Theta multiplies by a weight). Folded (N = 64 > 10 here, see folds_projections), each
    # also carries a projection: (N, h K) x (h K, C), N x h K x C.
    folded = attn.folds_projections(num_queries)
    assert folded == (side == 8)
    per_product = num_queries * cells * channels * (heads if folded else 1)
    attention = analyzer.by_operator()[ATTENTION]
    assert attention == (1 if less_attention else 2) * per_product
    # The project's count holds them and everything else besides.
    assert analyzer.total() > attention


def test_attention_products_of_a_swin_window_layer():
    channels, heads, window, windows = 32, 2, 7, 3
    attn = WindowMSA(channels, heads, (window, window)).eval()
    with torch.no_grad():
        analyzer = count_flops(attn, (torch.rand(windows, window**2, channels), ))
    # Per window, N = K = 49 tokens: q @ k^T and attn @ v, N x K x C each.
    assert analyzer.by_operator()[ATTENTION] == windows * 2 * window**2 * window**2 * channels
    # Everything else is the qkv and output projections: N x C x 3C and N x C x C per window.
    assert analyzer.total() - analyzer.by_operator()[ATTENTION] == windows * window**2 * channels**2 * 4


def test_get_flops_prints_both_counts():
    process = call_tool('tools/get_flops.py', '--models', 'lavit-t', 'pvtv2-b1')
    assert process.returncode == 0, process.stderr[-3000:]
    assert '| model | params (M) | GFLOPs | GFLOPs without attention products | attention products |' in process.stdout
    for name in ('lavit-t', 'pvtv2-b1'):
        row = next(line for line in process.stdout.splitlines() if line.startswith(f'| {name} |'))
        params, total, without, attention = (float(cell) for cell in row.strip('|').split('|')[1:])
        assert 0 < without < total and attention > 0
        assert total - attention == pytest.approx(without, abs=0.011)
