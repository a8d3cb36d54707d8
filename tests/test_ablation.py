"""tools/ablate.py: variants trained and measured under one detector, on generated data, 2 iterations."""
import json
import math
import statistics

import mmcv
import pytest

from mmlavit.cli import ablation
from mmlavit.cli.cell_cues import own_cell_colour_share
from mmlavit.cli.demo_data import make_coco_shapes
from tool_calls import call_tool, run_tool


def test_variant_specs():
    name, backbone = ablation.parse_variant('lavit-t-dp1=lavit-t,dp_weight=1.0,attn_residual=False')
    assert name == 'lavit-t-dp1'
    assert backbone == dict(type='mmlavit.LaViT', arch='t', dp_weight=1.0, attn_residual=False)
    assert ablation.VARIANTS['lavit-t'] == dict(type='mmlavit.LaViT', arch='t')  # not modified
    name, backbone = ablation.parse_variant("b0={'type': 'mmdet.PyramidVisionTransformerV2', 'embed_dims': 32}")
    assert (name, backbone['embed_dims']) == ('b0', 32)
    assert ablation.parse_variant('lavit-t-all-va')[1]['arch']['va_layers'] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match='unknown variant'):
        ablation.parse_variant('lavit-xl')


@pytest.mark.parametrize('variant,channels', [('lavit-t', [64, 128, 320, 512]), ('pvtv2-b1', [64, 128, 320, 512]),
                                              ('swin-t', [96, 192, 384, 768])])
def test_the_neck_takes_each_backbones_channels(variant, channels):
    assert ablation.output_channels(ablation.VARIANTS[variant], 'mmdet') == channels


def test_summary_is_mean_and_sample_std_over_seeds():
    runs = {'lavit-t': {0: dict(bbox_mAP=0.5, segm_mAP=0.4, sec_per_iter=1.0, saturation=0.9, l_sym=0.1,
                                l_diag=-0.2),
                        1: dict(bbox_mAP=0.7, segm_mAP=0.6, sec_per_iter=3.0, saturation=0.7, l_sym=0.3,
                                l_diag=-0.4)}}
    [row] = ablation.summarise(runs, {'lavit-t': (ablation.VARIANTS['lavit-t'], 'mmdet')}, (64, 64)).values()
    assert row['bbox_mAP'] == pytest.approx(0.6) and row['bbox_mAP_std'] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert row['sec_per_iter'] == pytest.approx(2.0) and row['l_diag'] == pytest.approx(-0.3)
    assert row['params_m'] == pytest.approx(11.02, abs=0.01) and row['seeds'] == [0, 1]


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes_ablation')
    make_coco_shapes(str(root), num_train=8, num_val=4, size=96, seed=2)
    return root


@pytest.mark.slow
def test_ablation_trains_measures_and_reuses(shapes_root, tmp_path):
    args = ['tools/ablate.py', '--variants', 'lavit-t', 'pvtv2-b1', '--seeds', '0', '--iters', '2',
            '--data-root', shapes_root, '--work-dir', tmp_path / 'runs', '--out-dir', tmp_path / 'out']
    process = run_tool(*args)
    assert process.returncode == 0, process.stderr[-3000:]
    assert '| variant | params (M) | GFLOPs | s/iter | bbox mAP |' in process.stdout
    report = json.loads((tmp_path / 'out' / 'ablation.json').read_text())
    assert report['schedule'] == dict(iters=2, warmup=1, lr=4e-4) and report['flops_shape'] == [96, 96]
    lavit, pvt = report['runs']['lavit-t']['0'], report['runs']['pvtv2-b1']['0']
    for result in (lavit, pvt):
        assert 0 <= result['bbox_mAP'] <= 1 and 0 <= result['segm_mAP'] <= 1 and result['sec_per_iter'] > 0
        assert 0 < result['saturation'] <= 1 + 1e-6
    # 96x96 images: LaViT-T's stage-1 and stage-2 grids (24, 12) hold the 7x7 cells; L_diag >= -1.
    assert math.isfinite(lavit['l_sym']) and -1 <= lavit['l_diag'] <= 1
    assert pvt['l_sym'] is None and pvt['l_diag'] is None
    summary = report['summary']
    assert summary['pvtv2-b1']['params_m'] == pytest.approx(13.50, abs=0.01)
    assert summary['lavit-t']['gflops'] > 0 and summary['lavit-t']['bbox_mAP'] == lavit['bbox_mAP']
    assert (tmp_path / 'out' / 'ablation.png').stat().st_size > 5000
    shares = [own_cell_colour_share(mmcv.imread(str(path))) for path in sorted(shapes_root.glob('val2017/*.jpg'))]
    assert report['own_cell_colour_share'] == pytest.approx(statistics.mean(shares))
    assert f'Own-cell colour share of the validation images: {statistics.mean(shares):.3f}' in process.stdout
    # The config each run trains with, beside its work dir (the Runner writes its copy into the work dir).
    config = (tmp_path / 'runs' / 'lavit-t' / 'seed0.py').read_text()
    assert "mmlavit.DPLossHook" in config and 'randomness = dict(seed=0)' in config
    assert 'DPLossHook' not in (tmp_path / 'runs' / 'pvtv2-b1' / 'seed0.py').read_text()

    process = call_tool(*args)
    assert process.returncode == 0, process.stderr[-3000:]
    assert 'lavit-t seed 0: reusing' in process.stdout and 'training in' not in process.stdout

    # Another schedule in the same work dir must not report the 2-iteration runs as its own.
    process = call_tool(*[('3' if arg == '2' else arg) for arg in args])
    assert process.returncode == 1 and 'training in' not in process.stdout
    assert process.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'runs' / 'lavit-t' / 'seed0'} holds a finished run of another config, backbone or "
        f"schedule than lavit-t seed 0 with these options: pass another --work-dir, or delete that folder to train "
        f"it again")
