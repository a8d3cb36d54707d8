"""What the tests share: the generated data sets and the runs of the demo configs, each made once per test run.

The runs' work dirs are read by many tests: a test that changes one works on a copy.
"""
import shutil
import types

import pytest
import torch

import mmlavit  # noqa: F401  registers LaViT and the safe checkpoint loader
from mmlavit.cli.demo_data import make_ade_shapes, make_coco_shapes, make_imagenet_shapes
from tool_calls import call_tool

DET_DEMO = 'configs/demo/mask_rcnn_lavit_t_shapes.py'
SEG_DEMO = 'configs/demo/upernet_lavit_t_shapes_ade.py'
CLS_DEMO = 'configs/demo/lavit_t_shapes_imagenet.py'


def det_options(data_root, max_epochs):
    """Tiny Mask R-CNN runs of the demo config: 8 images in batches of 4, a checkpoint and a log line for every
    epoch and iteration."""
    return ['--cfg-options', f'data_root={data_root}', f'train_cfg.max_epochs={max_epochs}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1']


def succeeded(process):
    """The output of a tool run, checked to have succeeded."""
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def coco_shapes(tmp_path_factory):
    """The COCO-format shapes set, 8 training and 4 validation images of 128x128: its root, ending with '/'."""
    root = tmp_path_factory.mktemp('coco_shapes')
    make_coco_shapes(str(root), num_train=8, num_val=4, seed=1)
    return f'{root}/'


@pytest.fixture(scope='session')
def ade_shapes(tmp_path_factory):
    """The ADE20K-layout shapes set, 8 training and 3 validation images of 120x120: its root."""
    return make_ade_shapes(str(tmp_path_factory.mktemp('ade') / 'ADEChallengeData2016'), num_train=8, num_val=3,
                           seed=1)


@pytest.fixture(scope='session')
def imagenet_shapes(tmp_path_factory):
    """The ImageNet-layout shapes set, 8 training and 2 validation images per class: its root."""
    return make_imagenet_shapes(str(tmp_path_factory.mktemp('imagenet')), num_train=8, num_val=2, seed=1)


@pytest.fixture(scope='session')
def det_run(coco_shapes, tmp_path_factory):
    """tools/train.py on the demo Mask R-CNN for one epoch (2 iterations), then ``--resume`` for a second.

    Returns:
        SimpleNamespace: ``work_dir`` (with epoch_1.pth and epoch_2.pth) and the two runs' ``logs``.
    """
    work_dir = tmp_path_factory.mktemp('det_run')
    first = succeeded(call_tool('tools/train.py', DET_DEMO, '--work-dir', work_dir, *det_options(coco_shapes, 1)))
    resumed = succeeded(call_tool('tools/train.py', DET_DEMO, '--work-dir', work_dir, '--resume',
                                  *det_options(coco_shapes, 2)))
    return types.SimpleNamespace(work_dir=work_dir, logs=(first, resumed))


@pytest.fixture(scope='session')
def seg_run(ade_shapes, tmp_path_factory):
    """tools/train.py on the demo UperNet for 4 iterations, validated at the end: (work dir, output)."""
    work_dir = tmp_path_factory.mktemp('seg_run')
    output = succeeded(call_tool('tools/train.py', SEG_DEMO, '--work-dir', work_dir, '--cfg-options',
                                 f'data_root={ade_shapes}', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
                                 'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=4'))
    return work_dir, output


@pytest.fixture(scope='session')
def cls_run(imagenet_shapes, tmp_path_factory):
    """tools/train.py on the demo classifier for two epochs (24 images in batches of 16), validated at the end:
    (work dir, output)."""
    work_dir = tmp_path_factory.mktemp('cls_run')
    output = succeeded(call_tool('tools/train.py', CLS_DEMO, '--work-dir', work_dir, '--cfg-options',
                                 f'data_root={imagenet_shapes}', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
                                 'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2'))
    return work_dir, output


@pytest.fixture
def copy_of(tmp_path):
    """Copies a file or folder of a shared run into this test's own directory, for a test that changes it."""

    def copy(source):
        target = tmp_path / source.name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        return target

    return copy
