"""The frameworks' own tools with the shipped LaViT configs, on CPU.

mmdet's and mmseg's tools/train.py and tools/test.py as their packages install them (under
``<package>/.mim/tools``) and OpenMMLab's ``mim train``: the configs import mmlavit through
``custom_imports``, so these tools build LaViT, train ``loss_dp`` and load checkpoints through mmlavit's
loader. They run in a directory that holds generated data where the demo configs expect it (``data/``),
for 2 iterations.
"""
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import torch

from mmlavit.cli.demo_data import make_ade_shapes, make_coco_shapes
from mmlavit.cli.tool_process import REPO
from test_checkpoint_safety import Payload, refusal
from tool_calls import TOOL_TIMEOUT, run_tool

pytestmark = pytest.mark.slow

DET_CONFIG = str(REPO / 'configs/demo/mask_rcnn_lavit_t_shapes.py')
SEG_CONFIG = str(REPO / 'configs/demo/upernet_lavit_t_shapes_ade.py')
#: 8 images in batches of 4: an epoch of 2 iterations, logged and checkpointed.
DET_TWO_ITERATIONS = ['--cfg-options', 'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
                      'default_hooks.checkpoint.interval=1']
SEG_TWO_ITERATIONS = ['--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                      'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2']


def framework_tool(package, script):
    """The path of a framework's own tool, e.g. mmdet/.mim/tools/train.py."""
    module = __import__(package)
    return osp.join(osp.dirname(module.__file__), '.mim', 'tools', script)


def output_of(process):
    return process.stdout + process.stderr


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A directory with data/shapes_coco and data/shapes_ade, as the demo configs' data_root name them."""
    root = tmp_path_factory.mktemp('framework_tools')
    make_coco_shapes(str(root / 'data' / 'shapes_coco'), num_train=8, num_val=4, seed=1)
    make_ade_shapes(str(root / 'data' / 'shapes_ade' / 'ADEChallengeData2016'), num_train=8, num_val=2, seed=1)
    return root


@pytest.fixture(scope='module')
def mmdet_checkpoint(workspace):
    """``mim train mmdet``, which runs mmdet's tools/train.py, 2 iterations: (process, checkpoint)."""
    work_dir = workspace / 'mmdet_train'
    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    process = subprocess.run([mim, 'train', 'mmdet', DET_CONFIG, '--gpus', '0', '--work-dir', str(work_dir),
                              *DET_TWO_ITERATIONS], cwd=workspace, capture_output=True, text=True,
                             timeout=TOOL_TIMEOUT)
    return process, work_dir / 'epoch_1.pth'


def test_mim_train_runs_mmdet_train_which_trains_loss_dp(mmdet_checkpoint):
    process, checkpoint = mmdet_checkpoint
    assert process.returncode == 0, output_of(process)[-3000:]
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\].*loss_dp: ', output_of(process)), output_of(process)[-3000:]
    assert checkpoint.is_file()


def test_mmdet_test_evaluates_the_checkpoint(workspace, mmdet_checkpoint, tmp_path):
    process, checkpoint = mmdet_checkpoint
    assert process.returncode == 0, output_of(process)[-3000:]
    process = run_tool(framework_tool('mmdet', 'test.py'), DET_CONFIG, checkpoint, '--work-dir', tmp_path,
                       cwd=workspace)
    assert process.returncode == 0, output_of(process)[-3000:]
    assert re.search(r'coco/bbox_mAP: [0-9.]+', process.stdout) and re.search(r'coco/segm_mAP: [0-9.]+',
                                                                              process.stdout)


def test_mmdet_test_refuses_a_checkpoint_that_runs_code(workspace, tmp_path):
    marker = tmp_path / 'payload_ran'
    checkpoint = tmp_path / 'downloaded.pth'
    torch.save({'meta': {'note': Payload(f'touch {marker}')}, 'state_dict': {}}, checkpoint)
    process = run_tool(framework_tool('mmdet', 'test.py'), DET_CONFIG, checkpoint, '--work-dir', tmp_path,
                       cwd=workspace)
    assert process.returncode != 0
    assert refusal(checkpoint) in process.stderr
    assert not marker.exists()


def test_mmseg_train_and_test(workspace, tmp_path):
    work_dir = tmp_path / 'mmseg_train'
    process = run_tool(framework_tool('mmseg', 'train.py'), SEG_CONFIG, '--work-dir', work_dir, *SEG_TWO_ITERATIONS,
                       cwd=workspace)
    assert process.returncode == 0, output_of(process)[-3000:]
    assert re.search(r'Iter\(train\) \[2/2\].*loss_dp: ', output_of(process)), output_of(process)[-3000:]
    process = run_tool(framework_tool('mmseg', 'test.py'), SEG_CONFIG, work_dir / 'iter_2.pth', '--work-dir',
                       tmp_path / 'mmseg_test', cwd=workspace)
    assert process.returncode == 0, output_of(process)[-3000:]
    assert re.search(r'mIoU: [0-9.]+', output_of(process)), output_of(process)[-3000:]
