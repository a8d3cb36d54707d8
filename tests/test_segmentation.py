"""UperNet with LaViT in mmseg: the shipped configs, loss_dp, both test modes, tools/train.py and tools/test.py."""
import math
import re

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmlavit import attach_dp_loss
from mmlavit.cli.demo_data import ADE_SHAPES_CLASSES
from mmlavit.cli.tool_process import REPO
from tool_calls import call_tool

DEMO_CONFIG = 'configs/demo/upernet_lavit_t_shapes_ade.py'
# A user's own mmseg config: only the backbone swapped (heads' in_channels to match) plus
# custom_imports and the one documented line, the DPLossHook.
USER_CONFIG = """
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmlavit'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='mmlavit.LaViT', arch='t'),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
custom_hooks = [dict(type='mmlavit.DPLossHook')]
"""


def build_segmentor(config):
    """The segmentor of a shipped config, with SyncBN reverted to BN as mmengine's Runner does on CPU."""
    cfg = Config.fromfile(REPO / 'configs' / config)
    init_default_scope('mmseg')
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def demo_inputs(shapes, num_classes):
    """A batch as mmseg's test suite builds it (``_demo_mm_inputs``): uint8 images, random label maps."""
    inputs, data_samples = [], []
    for height, width in shapes:
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, height, width)))
        data_samples.append(sample)
    return dict(inputs=inputs, data_samples=data_samples)


@pytest.mark.slow
def test_upernet_loss_has_loss_dp_in_the_total():
    model = build_segmentor('upernet_lavit-t_8xb2-160k_ade20k-512x512.py').train()
    attach_dp_loss(model)
    data = model.data_preprocessor(demo_inputs([(128, 128), (96, 150)], num_classes=150), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_ce', 'aux.acc_seg', 'loss_dp', 'dp_sym',
                           'dp_diag'}
    assert losses['loss_dp'].requires_grad and math.isfinite(losses['loss_dp'].item())
    total, log_vars = model.parse_losses(losses)
    expected = sum(value for key, value in losses.items() if 'loss' in key)
    assert torch.allclose(total, expected) and 'loss_dp' in log_vars


@pytest.mark.parametrize('test_cfg', [
    dict(mode='whole'),
    dict(mode='slide', crop_size=(512, 512), stride=(341, 341)),
], ids=['whole', 'slide'])
@pytest.mark.slow
def test_upernet_predicts_ade20k_sized_image(test_cfg):
    # 683 is not a multiple of 32, and mmseg's test-time whole mode feeds the image unpadded.
    model = build_segmentor('upernet_lavit-t_8xb2-160k_ade20k-512x512.py').eval()
    model.test_cfg = ConfigDict(test_cfg)
    data = model.data_preprocessor(demo_inputs([(512, 683)], num_classes=150), False)
    assert data['inputs'].shape[-2:] == (512, 683)
    with torch.no_grad():
        [result] = model(**data, mode='predict')
    assert result.pred_sem_seg.shape == (512, 683)
    assert result.seg_logits.data.shape == (150, 512, 683)


@pytest.mark.slow
def test_train_tool_logs_loss_dp_and_saves_the_classes(seg_run):
    work_dir, stdout = seg_run
    logged = re.findall(r'Iter\(train\) \[\s*\d+/4\].*loss_dp: (-?[\d.]+)', stdout)
    assert len(logged) == 4 and all(math.isfinite(float(value)) for value in logged)
    assert re.search(r'Iter\(val\) \[3/3\].*mIoU', stdout)
    checkpoint = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['dataset_meta']['classes'] == ADE_SHAPES_CLASSES


@pytest.mark.slow
@pytest.mark.parametrize('test_options', [
    [],
    ['model.test_cfg.mode=slide', 'model.test_cfg.crop_size=(64,64)', 'model.test_cfg.stride=(43,43)'],
], ids=['whole', 'slide'])
def test_test_tool_prints_iou_metrics(seg_run, ade_shapes, test_options, tmp_path):
    # The generated images are 120x120: not a multiple of 32.
    work_dir, _ = seg_run
    process = call_tool('tools/test.py', DEMO_CONFIG, work_dir / 'iter_4.pth', '--work-dir', tmp_path,
                        '--cfg-options', f'data_root={ade_shapes}', *test_options)
    assert process.returncode == 0, process.stderr[-3000:]
    found = re.search(r'Iter\(test\) \[3/3\]\s+aAcc: ([\d.]+)\s+mIoU: ([\d.]+)\s+mAcc: ([\d.]+)',
                      process.stdout)
    assert found and all(0 <= float(value) <= 100 for value in found.groups())


@pytest.mark.slow
def test_user_mmseg_config_with_one_line_logs_loss_dp(ade_shapes, tmp_path):
    config = tmp_path / 'user_upernet_lavit.py'
    config.write_text(USER_CONFIG)
    # Narrower heads only for speed (a 512-channel UPerHead on 512x512 crops costs a minute on CPU).
    process = call_tool('tools/train.py', config, '--work-dir', tmp_path / 'work', '--cfg-options',
                        f'data_root={ade_shapes}', 'train_cfg.max_iters=1', 'default_hooks.logger.interval=1',
                        'model.decode_head.channels=64', 'model.auxiliary_head.channels=32',
                        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
                        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None')
    assert process.returncode == 0, process.stderr[-3000:]
    assert re.search(r'Iter\(train\) \[1/1\].*decode\.loss_ce: [\d.]+.*loss_dp: -?[\d.]+', process.stdout)


def test_missing_ade20k_names_the_layout_and_the_fix(tmp_path):
    checkpoint = tmp_path / 'iter_160000.pth'
    checkpoint.write_bytes(b'')
    process = call_tool('tools/test.py', 'configs/upernet_lavit-s_8xb2-160k_ade20k-512x512.py', checkpoint,
                        '--cfg-options', f'data_root={tmp_path}/ade/ADEChallengeData2016')
    assert process.returncode != 0
    assert 'data/ade/ADEChallengeData2016/images/{training,validation}' in process.stderr
    assert '--cfg-options data_root=' in process.stderr
