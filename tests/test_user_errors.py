"""What the tools say when the user has something to fix: one `error: ...` line (or a few) naming the problem and
the fix, exit status 1, no traceback, and nothing the user wrote removed or overwritten."""
import hashlib
import inspect
import os
import re
import shutil

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmlavit import LaViT
from mmlavit.cli.demo_data import ADE_SHAPES_CLASSES, SHAPE_CLASSES
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.model_checks import ConfigError, check_model_config
from mmlavit.cli.tool_process import REPO
from mmlavit.models.errors import LaViTConfigError, LaViTInputError
from test_tool_options import save_untrained_checkpoint
from tool_calls import call_tool, run_tool

DET_DEMO = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
SEG_DEMO = 'configs/demo/upernet_lavit_t_shapes_ade.py'
CLS_DEMO = 'configs/demo/lavit_t_shapes_imagenet.py'


def user_error(process) -> str:
    """The error a tool stopped with: exit status 1, no traceback, and ``error: ...`` ending its stderr."""
    assert process.returncode == 1, (process.stdout + process.stderr)[-3000:]
    assert 'Traceback' not in process.stderr, process.stderr[-3000:]
    message = process.stderr[process.stderr.rindex('error: '):].rstrip()
    assert message.startswith('error: ')
    return message


def snapshot(directory):
    """Every file under ``directory`` with a digest of its bytes."""
    return {path.relative_to(directory): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob('*')) if path.is_file()}


# Configs.

def test_config_syntax_error_names_the_file_and_line(tmp_path):
    base = tmp_path / 'my_base.py'
    base.write_text("_base_ = '{}'\nmodel = dict(\n    backbone=dict(arch='t')\n".format(REPO / DET_DEMO))
    config = tmp_path / 'my_config.py'
    config.write_text("_base_ = './my_base.py'\n")
    before = snapshot(tmp_path)
    # The config parses; its base does not: the error names the base.
    message = user_error(call_tool('tools/train.py', config, '--work-dir', tmp_path / 'work'))
    assert message == f"error: syntax error in config {base}, line 2: '(' was never closed\n    model = dict("
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_missing_config_is_named(tool, tmp_path):
    arguments = [tmp_path / 'no_such_config.py'] + ([tmp_path / 'x.pth'] if tool == 'tools/test.py' else [])
    if tool == 'tools/test.py':
        (tmp_path / 'x.pth').write_bytes(b'')
    message = user_error(call_tool(tool, *arguments))
    assert message == f'error: config file {tmp_path / "no_such_config.py"} does not exist'


def test_neck_channels_that_do_not_match_lavit(coco_shapes, tmp_path):
    process = call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'work', '--cfg-options',
                        f'data_root={coco_shapes}/', 'model.neck.in_channels=[96,192,384,768]')
    assert user_error(process) == (
        "error: model.neck.in_channels is [96, 192, 384, 768], but LaViT (arch 't', out_indices (0, 1, 2, 3)) "
        "outputs [64, 128, 320, 512] channels: set model.neck.in_channels=[64, 128, 320, 512] (or pick other "
        "stages with model.backbone.out_indices)")
    assert not (tmp_path / 'work').exists()
    # Loading the config's mmdet:: bases printed no pkg_resources deprecation warning either.
    assert process.stderr.strip() == user_error(process)


def model_config(config, **changes):
    cfg = Config.fromfile(REPO / 'configs' / config)
    for key, value in changes.items():
        cfg.merge_from_dict({key: value})
    return cfg.model


@pytest.mark.parametrize('config,changes,message', [
    ('upernet_lavit-t_8xb2-160k_ade20k-512x512.py', {'model.decode_head.in_channels': [96, 192, 384, 768]},
     "model.decode_head.in_channels is [96, 192, 384, 768], but LaViT (arch 't', out_indices (0, 1, 2, 3)) "
     "outputs [64, 128, 320, 512] channels at in_index [0, 1, 2, 3] (all its outputs: [64, 128, 320, 512]): "
     "set model.decode_head.in_channels=[64, 128, 320, 512]"),
    ('upernet_lavit-t_8xb2-160k_ade20k-512x512.py', {'model.auxiliary_head.in_channels': 384},
     "model.auxiliary_head.in_channels is 384, but LaViT (arch 't', out_indices (0, 1, 2, 3)) outputs 320 "
     "channels at in_index 2 (all its outputs: [64, 128, 320, 512]): set model.auxiliary_head.in_channels=320"),
    ('upernet_lavit-t_8xb2-160k_ade20k-512x512.py', {'model.backbone.out_indices': (1, 2, 3)},
     "model.decode_head.in_index is [0, 1, 2, 3], but LaViT (arch 't', out_indices (1, 2, 3)) has 3 outputs: "
     "set model.decode_head.in_index to indices below 3 (or set model.backbone.out_indices)"),
    ('retinanet_lavit-t_fpn_1x_coco.py', {'model.backbone.out_indices': (0, 1, 2, 3)},
     "model.neck.in_channels is [128, 320, 512], but LaViT (arch 't', out_indices (0, 1, 2, 3)) outputs "
     "[64, 128, 320, 512] channels: set model.neck.in_channels=[64, 128, 320, 512] (or pick other stages with "
     "model.backbone.out_indices)"),
    ('lavit-t_16xb64_in1k.py', {'model.head.in_channels': 768},
     "model.head.in_channels is 768, but LaViT (arch 't', out_indices (3,)) outputs 512 channels at its last "
     "output: set model.head.in_channels=512"),
    ('fpn_lavit-t_8xb4-80k_ade20k-512x512.py', {'model.pretrained': 'open-mmlab://resnet50_v1c'},
     "model.pretrained='open-mmlab://resnet50_v1c' would be passed to LaViT, which loads weights through its "
     "init_cfg: set model.pretrained=None and model.backbone.init_cfg.checkpoint=PATH"),
], ids=['decode-head', 'auxiliary-head', 'in-index', 'retinanet-neck', 'classifier-head', 'mmseg-pretrained'])
def test_model_check_names_lavit_channels_and_the_key(config, changes, message):
    with pytest.raises(ConfigError) as error:
        check_model_config(model_config(config, **changes))
    assert str(error.value) == message


# The S config of each recipe (T and B differ in the arch only, see test_protocol_configs.py) and the demos.
CHECKED_CONFIGS = [*(REPO / 'configs').glob('*lavit-s_*.py'), *(REPO / 'configs').glob('demo/*.py')]


@pytest.mark.parametrize('config', sorted(path.relative_to(REPO / 'configs').as_posix() for path in CHECKED_CONFIGS))
def test_shipped_configs_pass_the_model_check(config):
    check_model_config(model_config(config))


def test_truncated_annotation_file_is_named(coco_shapes, tmp_path):
    data_root = tmp_path / 'coco'
    shutil.copytree(coco_shapes, data_root)
    annotations = data_root / 'annotations' / 'instances_train2017.json'
    text = annotations.read_text()
    annotations.write_text(text[:len(text) // 2])
    before = snapshot(data_root)
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'work', '--cfg-options',
                                   f'data_root={data_root}/'))
    assert message.startswith(f'error: annotation file {data_root}/annotations/instances_train2017.json is cut '
                              f'short: it ends with ')
    assert message.endswith('instead of the closing bracket of its JSON (a download or copy that did not '
                            'finish?). Copy it again.')
    assert snapshot(data_root) == before and not (tmp_path / 'work').exists()


# Tool arguments.

def test_export_to_a_missing_directory_fails_before_the_export(tmp_path):
    out = tmp_path / 'no' / 'such' / 'dir' / 'x.onnx'
    message = user_error(call_tool('tools/export_onnx.py', DET_DEMO, '--out', out))
    assert message == f'error: --out {out}: the directory {out.parent} does not exist; create it first'
    assert not (tmp_path / 'no').exists()


def test_checkpoint_that_is_a_directory(tmp_path):
    work_dir = tmp_path / 'work_dirs' / 'run'
    work_dir.mkdir(parents=True)
    (work_dir / 'epoch_1.pth').write_bytes(b'weights')
    before = snapshot(tmp_path)
    message = user_error(call_tool('tools/test.py', DET_DEMO, work_dir))
    assert message == (f'error: checkpoint {work_dir} is a directory, not a checkpoint file: give a .pth file, '
                       f'e.g. {work_dir / "epoch_1.pth"}')
    assert snapshot(tmp_path) == before


# LaViT's options.

def test_unknown_backbone_key_names_the_accepted_ones(coco_shapes, tmp_path):
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'work', '--cfg-options',
                                   f'data_root={coco_shapes}/', 'model.backbone.archh=s'))
    accepted = ', '.join(list(inspect.signature(LaViT.__init__).parameters)[1:])
    assert message == (f'error: model.backbone.archh (did you mean arch?): not a LaViT option. LaViT takes: '
                       f'{accepted}')
    assert not (tmp_path / 'work').exists()


def test_lavit_config_error_ends_as_a_user_error(coco_shapes, tmp_path):
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'work', '--cfg-options',
                                   f'data_root={coco_shapes}/', 'model.backbone.init_cfg.checkpont=lavit_t.pth'))
    assert "error: LaViT's Pretrained init_cfg has no key 'checkpont'" in message
    assert not (tmp_path / 'work').exists()


@pytest.mark.parametrize('error', [
    LaViTConfigError('class `MaskRCNN` in mmdet/models/detectors/mask_rcnn.py: class `LaViT` in '
                     'mmlavit/models/lavit.py: LaViT option pool_size=1 is not accepted'),
    LaViTInputError('LaViT needs images of at least 32x32, got 16x16'),
], ids=['config', 'input'])
def test_lavit_errors_exit_with_their_message(error):
    """mmengine's registry prefixes 'class `X` in path.py: ' per level it builds; the message is LaViT's own."""
    with pytest.raises(SystemExit) as stopped:
        with exit_on_user_error():
            raise error
    assert stopped.value.code == 'error: ' + re.sub(r'^(class `\w+` in [\w/.]+\.py: )+', '', str(error))
    assert 'class `' not in stopped.value.code


# Checkpoints that do not fit.

@pytest.fixture(scope='module')
def lavit_t_detector(tmp_path_factory, coco_shapes):
    """An untrained checkpoint of the demo Mask R-CNN (LaViT-T) and a backbone-only LaViT-T state dict."""
    root = tmp_path_factory.mktemp('checkpoints')
    detector = save_untrained_checkpoint(DET_DEMO, [f'data_root={coco_shapes}/'], root / 'epoch_1.pth',
                                         SHAPE_CLASSES)
    backbone = root / 'lavit_t_backbone.pth'
    torch.save({'state_dict': LaViT(arch='t').state_dict()}, backbone)
    return detector, backbone


def test_lavit_t_checkpoint_on_a_lavit_s_config(lavit_t_detector, coco_shapes, tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'notes.txt').write_text('results so far\n')
    shutil.copy(lavit_t_detector[0], work_dir / 'epoch_1.pth')
    before = snapshot(work_dir)
    options = ['--cfg-options', f'data_root={coco_shapes}/', 'model.backbone.arch=s']
    process = call_tool('tools/test.py', DET_DEMO, work_dir / 'epoch_1.pth', '--work-dir', work_dir, *options)
    message = user_error(process)
    assert message.startswith(f'error: checkpoint {work_dir / "epoch_1.pth"} does not fit the model: ')
    assert "It holds LaViT arch 't' weights under the prefix 'backbone.'" in message
    assert "the model's LaViT is arch 's' under the prefix 'backbone.'" in message
    assert 'coco/bbox_mAP' not in process.stdout
    assert snapshot(work_dir) == before

    # Training from it (load_from) stops the same way, before the first iteration.
    process = call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'train', *options,
                        f'load_from={work_dir / "epoch_1.pth"}')
    assert 'does not fit the model' in user_error(process) and 'Epoch(train)' not in process.stdout
    assert snapshot(work_dir) == before and not (tmp_path / 'train').exists()


def test_partial_checkpoint_loads_when_allowed(lavit_t_detector, coco_shapes, tmp_path):
    process = call_tool('tools/test.py', DET_DEMO, lavit_t_detector[0], '--allow-partial-checkpoint',
                        '--work-dir', tmp_path / 'work', '--cfg-options', f'data_root={coco_shapes}/',
                        'model.backbone.arch=s')
    assert process.returncode == 0, process.stderr[-3000:]
    assert 'fits the model only in part (--allow-partial-checkpoint)' in process.stdout + process.stderr
    assert re.search(r'coco/bbox_mAP: [\d.]+', process.stdout)


def test_backbone_only_checkpoint_is_not_a_detector(lavit_t_detector, coco_shapes):
    backbone = lavit_t_detector[1]
    message = user_error(call_tool('tools/test.py', DET_DEMO, backbone, '--cfg-options', f'data_root={coco_shapes}/'))
    assert message.startswith(f"error: checkpoint {backbone} does not fit the model: 0 of the model's ")
    assert f'--cfg-options model.backbone.init_cfg.checkpoint={backbone}' in message


# tools/infer.py on each kind of model.

@pytest.fixture(scope='module')
def infer_data(ade_shapes, coco_shapes, imagenet_shapes):
    return {
        'seg': (SEG_DEMO, f'{ade_shapes}/images/validation/ADE_val_00000001.jpg', [f'data_root={ade_shapes}'],
                ADE_SHAPES_CLASSES),
        'det': (DET_DEMO, f'{coco_shapes}val2017/000001.jpg', [f'data_root={coco_shapes}'], SHAPE_CLASSES),
        'cls': (CLS_DEMO, f'{imagenet_shapes}/val/circle/val_circle_00001.JPEG', [f'data_root={imagenet_shapes}'],
                SHAPE_CLASSES),
    }


@pytest.mark.parametrize('kind', ['seg', 'det', 'cls'])
def test_infer_draws_what_each_model_predicts(kind, infer_data, tmp_path):
    config, image, options, classes = infer_data[kind]
    checkpoint = save_untrained_checkpoint(config, options, tmp_path / f'{kind}.pth', classes)
    process = call_tool('tools/infer.py', image, config, checkpoint, '--out', tmp_path / 'drawn', '--score-thr', '0')
    assert process.returncode == 0, process.stderr[-3000:]
    out_file = tmp_path / 'drawn' / os.path.basename(image)
    summary = process.stdout.strip().splitlines()[-1]
    assert summary.endswith(f' drawn into {out_file}')
    drawn, original = mmcv.imread(out_file), mmcv.imread(image)
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).mean() > 1
    if kind == 'seg':
        shares = re.findall(r'(\w+) ([\d.]+)%', summary)
        assert {name for name, _ in shares} <= set(classes) and sum(float(p) for _, p in shares) == pytest.approx(
            100, abs=0.5)
    elif kind == 'det':
        assert re.match(r'\d+ detections with score >= 0.0 drawn', summary) and not summary.startswith('0 ')
    else:
        assert re.match(rf'class ({"|".join(classes)}) \(score 0\.\d+\) drawn', summary)


# Warnings that say nothing to the user.

def test_tools_print_no_pkg_resources_warnings():
    process = run_tool('tools/train.py', '--help')
    assert process.returncode == 0 and 'Warning' not in process.stdout + process.stderr
