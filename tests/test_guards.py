"""The tools guard what the user has: checkpoints whole or absent, one run per work dir and none over another's,
no output over an input, a diverged run stopped, options as typed, and one line for every mistake.

Every test checks the exit status, the message, and that the files the user had are byte-identical afterwards.
"""
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import types
import zipfile

import cv2
import numpy as np
import pytest
import torch
from mmengine.fileio.backends import LocalBackend

from conftest import CLS_DEMO, DET_DEMO, SEG_DEMO, det_options, succeeded
from mmlavit.cli.demo_data import SHAPE_CLASSES
from mmlavit.cli.tool_process import REPO
from mmlavit.engine.dp_loss_hook import DPLossHook, TrainingDivergedError
from mmlavit.utils.checkpoint import TRUST_ENV
from test_tool_options import save_untrained_checkpoint
from tool_calls import call_tool

SEG_OPTIONS = ['train_cfg.max_iters=1', 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']


def snapshot(*roots):
    """Every file under the roots (or the root files) with a digest of its bytes."""
    found = {}
    for root in map(str, roots):
        paths = [root] if os.path.isfile(root) else [os.path.join(folder, name) for folder, _, names in
                                                      os.walk(root) for name in names]
        found.update({path: hashlib.md5(open(path, 'rb').read()).hexdigest() for path in paths})
    return found


def user_error(process) -> str:
    """The last line of a tool that stopped with ``error: ...``, exit status 1 and no traceback."""
    assert process.returncode == 1, (process.stdout + process.stderr)[-3000:]
    assert 'Traceback' not in process.stderr, process.stderr[-3000:]
    return process.stderr.strip().splitlines()[-1]


@pytest.fixture(scope='module')
def untrained_detector(tmp_path_factory, coco_shapes):
    """A checkpoint of the demo Mask R-CNN as built, its weights at their initial values."""
    return save_untrained_checkpoint(DET_DEMO, [f'data_root={coco_shapes}'],
                                     tmp_path_factory.mktemp('untrained') / 'epoch_1.pth', SHAPE_CLASSES)


@pytest.fixture
def checkpoint_file(tmp_path):
    """A file named as a checkpoint, for the runs that stop before they read it."""
    path = tmp_path / 'epoch_12.pth'
    path.write_bytes(b'weights')
    return path


@pytest.fixture
def det_work_dir(det_run, tmp_path):
    """A copy of the session's Mask R-CNN run (epoch_1.pth, epoch_2.pth, last_checkpoint) to change."""
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        shutil.copy2(det_run.work_dir / name, work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_2.pth'))
    return work_dir


# Checkpoints are whole or absent.

def fill_the_disk_at(name, monkeypatch):
    """File writes of checkpoints named ``name`` fail with ENOSPC after writing half, as a full disk does."""
    put = LocalBackend.put

    def put_until_full(self, obj, filepath):
        if name in os.path.basename(str(filepath)):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device', str(filepath))
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put_until_full)


@pytest.mark.slow
def test_full_disk_keeps_the_last_complete_checkpoint_which_resumes(coco_shapes, tmp_path, monkeypatch):
    """max_keep_ckpts=1 and the disk full while epoch 2 is saved: mmengine's hook would remove epoch_1.pth first."""
    work_dir = tmp_path / 'work'
    options = [*det_options(coco_shapes, 2), 'default_hooks.checkpoint.max_keep_ckpts=1']
    fill_the_disk_at('epoch_2', monkeypatch)
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', work_dir, *options))
    assert re.fullmatch(rf'error: no space left to save a checkpoint in {work_dir} \(\d+ MiB free\): the run '
                        rf'stopped, and epoch_2.pth was not written. The last complete checkpoint is '
                        rf'{work_dir / "epoch_1.pth"}; free some space and continue with --resume.', message)
    assert sorted(path.name for path in work_dir.glob('*.pth*')) == ['epoch_1.pth']
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'epoch_1.pth')
    assert not list(work_dir.glob('.*partial'))
    monkeypatch.undo()
    log = succeeded(call_tool('tools/train.py', DET_DEMO, '--work-dir', work_dir, '--resume', *options))
    assert 'resumed epoch: 1, iter: 2' in log
    assert sorted(path.name for path in work_dir.glob('*.pth')) == ['epoch_2.pth']  # max_keep_ckpts=1, once saved


# A run never writes over another run.

@pytest.mark.slow
def test_resume_without_last_checkpoint_takes_the_newest_complete_one(det_work_dir, coco_shapes):
    """The .pth files copied without the last_checkpoint record: --resume continues from epoch_2.pth."""
    (det_work_dir / 'last_checkpoint').unlink()
    before = snapshot(det_work_dir / 'epoch_1.pth', det_work_dir / 'epoch_2.pth')
    log = succeeded(call_tool('tools/train.py', DET_DEMO, '--work-dir', det_work_dir, '--resume',
                              *det_options(coco_shapes, 2)))
    assert f'resuming from the newest complete checkpoint, {det_work_dir / "epoch_2.pth"}' in log
    assert 'resumed epoch: 2, iter: 4' in log and 'Epoch(train)' not in log
    assert snapshot(det_work_dir / 'epoch_1.pth', det_work_dir / 'epoch_2.pth') == before


def test_resume_into_a_work_dir_without_checkpoints_is_an_error(coco_shapes, tmp_path):
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'typo', '--resume',
                                   *det_options(coco_shapes, 1)))
    assert message.startswith(f'error: --resume continues the run in {tmp_path / "typo"}, which holds no complete '
                              f'checkpoint')
    assert not (tmp_path / 'typo').exists()


def test_a_new_run_into_another_runs_checkpoints_is_refused(coco_shapes, tmp_path):
    det_work_dir = tmp_path / 'run'
    det_work_dir.mkdir()
    for name in ('epoch_1.pth', 'epoch_2.pth', 'last_checkpoint'):
        (det_work_dir / name).write_bytes(b'an earlier run')
    before = snapshot(det_work_dir)
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', det_work_dir,
                                   *det_options(coco_shapes, 1)))
    assert message == (f'error: work dir {det_work_dir} holds the checkpoints of an earlier run (epoch_1.pth, '
                       f'epoch_2.pth), which this run would write over: continue that run with --resume, train into '
                       f'another --work-dir, or pass --start-over to move them into a subfolder of {det_work_dir} and '
                       f'start a new run there')
    assert snapshot(det_work_dir) == before


@pytest.mark.slow
def test_start_over_moves_the_earlier_checkpoints_aside(det_work_dir, coco_shapes):
    before = {os.path.basename(path): digest for path, digest in snapshot(det_work_dir).items()
              if path.endswith(('.pth', 'last_checkpoint'))}
    log = succeeded(call_tool('tools/train.py', DET_DEMO, '--work-dir', det_work_dir, '--start-over',
                              *det_options(coco_shapes, 1)))
    [aside] = det_work_dir.glob('previous_run_*')
    assert f'moved the earlier run\'s checkpoints into {aside}' in log
    assert {os.path.basename(path): digest for path, digest in snapshot(aside).items()} == before
    assert (det_work_dir / 'epoch_1.pth').is_file() and not (det_work_dir / 'epoch_2.pth').exists()


def test_a_work_dir_in_use_is_refused_and_a_stale_lock_taken_over(coco_shapes, tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        lock = dict(pid=holder.pid, host=socket.gethostname(), started='2026-12-07 10:00:00')
        (work_dir / '.train.lock').write_text(json.dumps(lock))
        message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', work_dir,
                                       *det_options(coco_shapes, 0)))
        assert message == (f'error: work dir {work_dir} is in use by another run (process {holder.pid} on host '
                           f'{socket.gethostname()}, since 2026-12-07 10:00:00): wait for it to end, or train into '
                           f'another --work-dir. If that run is gone, remove {work_dir / ".train.lock"}.')
    finally:
        holder.kill()
        holder.wait()
    log = succeeded(call_tool('tools/train.py', DET_DEMO, '--work-dir', work_dir, *det_options(coco_shapes, 0)))
    assert f'{work_dir} was locked by process {holder.pid}, which has ended: taking the lock over' in log
    assert not (work_dir / '.train.lock').exists()  # released at the end


@pytest.mark.slow
def test_two_runs_started_together_into_one_work_dir(coco_shapes, tmp_path):
    """Two real processes: one trains, the other stops at the lock; the checkpoints are the one run's."""
    work_dir = tmp_path / 'work'
    command = [sys.executable, 'tools/train.py', DET_DEMO, '--work-dir', str(work_dir), *det_options(coco_shapes, 1)]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS='1')) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 1], outputs
    refused = next(err for run, (_, err) in zip(runs, outputs) if run.returncode == 1)
    assert re.search(rf'error: work dir {work_dir} is in use by another run \(process \d+', refused)
    trained = next(out for run, (out, _) in zip(runs, outputs) if run.returncode == 0)
    assert 'Epoch(train) [1][2/2]' in trained
    assert sorted(path.name for path in work_dir.glob('*.pth')) == ['epoch_1.pth']
    assert not (work_dir / '.train.lock').exists()


def test_a_work_dir_that_is_a_file(coco_shapes, tmp_path):
    notes = tmp_path / 'notes.txt'
    notes.write_text('mine\n')
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', notes, *det_options(coco_shapes, 1)))
    assert message == f'error: --work-dir {notes} is a file: give a folder for the run\'s logs and checkpoints'
    assert notes.read_text() == 'mine\n'


# No tool writes over what it reads.

@pytest.fixture
def image_folder(coco_shapes, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    for name in ('000001.jpg', '000002.jpg'):
        shutil.copy(f'{coco_shapes}val2017/{name}', folder)
    return folder


def test_no_tool_writes_over_its_inputs(checkpoint_file, coco_shapes, image_folder, tmp_path):
    checkpoint = checkpoint_file
    config = tmp_path / 'my_config.py'
    config.write_text(f'_base_ = {str(REPO / DET_DEMO)!r}\n')
    image = image_folder / '000001.jpg'
    before = snapshot(image_folder, checkpoint, config, coco_shapes)
    cases = [
        (['tools/infer.py', image, DET_DEMO, checkpoint, '--out', image_folder],
         f'error: --out {image} would write over the image {image}, which this run reads: choose another --out'),
        (['tools/infer.py', image_folder, DET_DEMO, checkpoint, '--out', image_folder / 'drawn'],
         f'error: --out {image_folder / "drawn"} lies in the images\' folder {image_folder}, which this run reads: '
         f'choose a --out outside it'),
        (['tools/convert_checkpoint.py', checkpoint, checkpoint],
         f'error: dst {checkpoint} would write over src {checkpoint}, which this run reads: choose another dst'),
        (['tools/test.py', DET_DEMO, checkpoint, '--out', checkpoint, '--cfg-options', f'data_root={coco_shapes}'],
         f'error: --out {checkpoint} would write over the checkpoint {checkpoint}, which this run reads: choose '
         f'another --out'),
        (['tools/test.py', DET_DEMO, checkpoint, '--show-dir', f'{coco_shapes}val2017', '--work-dir', tmp_path / 'w',
          '--cfg-options', f'data_root={coco_shapes}'],
         f'error: --show-dir {coco_shapes}val2017 would write over the data set\'s {coco_shapes}val2017, which this '
         f'run reads'),
        (['tools/train.py', config, '--work-dir', tmp_path, *det_options(coco_shapes, 1)],
         f'error: --work-dir {config} would write over the config {config}, which this run reads: choose another '
         f'--work-dir'),
        (['tools/train.py', DET_DEMO, '--work-dir', f'{coco_shapes}train2017/run', *det_options(coco_shapes, 1)],
         f'error: --work-dir {coco_shapes}train2017/run lies in the data set\'s {coco_shapes}train2017, which this '
         f'run reads'),
        (['tools/export_onnx.py', config, checkpoint, '--out', config],
         f'error: --out {config} would write over the config {config}, which this run reads: choose another --out'),
        (['tools/analyze_attention.py', DET_DEMO, image_folder / 'saturation.png', '--out-dir', image_folder],
         f'error: --out-dir {image_folder / "saturation.png"} would write over the image '),
    ]
    (image_folder / 'saturation.png').write_bytes((image_folder / '000002.jpg').read_bytes())
    before[str(image_folder / 'saturation.png')] = snapshot(image_folder / 'saturation.png')[
        str(image_folder / 'saturation.png')]
    for arguments, expected in cases:
        assert user_error(call_tool(*arguments)).startswith(expected), arguments
    assert snapshot(image_folder, checkpoint, config, coco_shapes) == before
    assert not (tmp_path / 'w').exists()


@pytest.mark.slow
def test_infer_draws_every_image_of_a_folder(det_run, image_folder, tmp_path):
    process = succeeded(call_tool('tools/infer.py', image_folder, DET_DEMO, det_run.work_dir / 'epoch_2.pth',
                                  '--out', tmp_path / 'drawn', '--score-thr', '0'))
    assert len(re.findall(r'detections with score >= 0.0 drawn into', process)) == 2
    assert sorted(path.name for path in (tmp_path / 'drawn').iterdir()) == ['000001.jpg', '000002.jpg']


def test_infer_on_what_is_no_image(checkpoint_file, tmp_path):
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image\n')
    message = user_error(call_tool('tools/infer.py', text, DET_DEMO, checkpoint_file, '--out', tmp_path / 'drawn'))
    assert message == (f'error: {text} is not an image that can be decoded: give a JPEG, PNG or other image file (or '
                       f'a folder of them)')
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert user_error(call_tool('tools/infer.py', empty, DET_DEMO, checkpoint_file, '--out',
                                tmp_path / 'drawn')).startswith(f'error: folder {empty} holds no image')


# A diverged run stops.

@pytest.mark.slow
def test_a_diverging_run_stops_and_saves_nothing_non_finite(coco_shapes, tmp_path):
    """lr 1e10 on the demo Mask R-CNN (1e8 in its warm-up): not finite within a few steps; a checkpoint after every
    iteration."""
    work_dir = tmp_path / 'work'
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', work_dir, *det_options(coco_shapes, 2),
                                   'optim_wrapper.optimizer.lr=1e10', 'default_hooks.checkpoint.by_epoch=False'))
    found = re.fullmatch(r'error: training diverged (?:at|by) iteration (\d): (.+?) (?:(?:is|are) not finite|'
                         r'weight tensors are not finite, and they were not saved)\. Lower the learning rate '
                         r'\(optim_wrapper\.optimizer\.lr\), clip the gradients \(optim_wrapper\.clip_grad='
                         r'dict\(max_norm=1\.0\)\), or train in float32 \(without --amp\)\. (.+)', message)
    assert found, message
    iteration = int(found[1]) + ('by iteration' in message)
    saved = sorted(work_dir.glob('*.pth'))
    assert [path.name for path in saved] == [f'iter_{step}.pth' for step in range(1, iteration)]
    for path in saved:
        weights = torch.load(path, map_location='cpu', weights_only=False)['state_dict'].values()
        assert all(torch.isfinite(value).all() for value in weights if value.is_floating_point())
    if saved:
        assert (work_dir / 'last_checkpoint').read_text() == str(saved[-1])
        assert found[3] == f'The last checkpoint, {saved[-1]}, is from before.'


def test_non_finite_weights_are_not_saved():
    hook, runner = DPLossHook(), types.SimpleNamespace(iter=7, work_dir='/nowhere')
    weights = {'a': torch.ones(2), 'b': torch.tensor([1.0, float('nan')]), 'c': torch.tensor([float('inf')]),
               'steps': torch.tensor([3])}
    with pytest.raises(TrainingDivergedError, match=r'training diverged by iteration 7: 2 of the model\'s 4 weight '
                                                    r'tensors are not finite, and they were not saved\.'):
        hook.before_save_checkpoint(runner, dict(state_dict=weights))
    hook.before_save_checkpoint(runner, dict(state_dict={'a': torch.ones(2)}))


def test_tools_refuse_a_checkpoint_with_non_finite_weights(untrained_detector, coco_shapes, tmp_path):
    checkpoint = torch.load(untrained_detector, map_location='cpu', weights_only=False)
    weights = checkpoint['state_dict']
    for key in ('backbone.stages.0.norm.weight', 'neck.fpn_convs.0.conv.weight', 'roi_head.bbox_head.fc_cls.bias'):
        weights[key] = torch.full_like(weights[key], float('nan'))
    diverged = tmp_path / 'diverged.pth'
    torch.save(checkpoint, diverged)
    tensors = sum(value.is_floating_point() for value in weights.values())
    expected = (f'error: checkpoint {diverged} has 3 of its {tensors} weight tensors not finite (NaN or infinite): it '
                f'comes from a run that diverged.')
    for arguments in (['tools/test.py', DET_DEMO, diverged, '--work-dir', tmp_path / 'w', '--cfg-options',
                       f'data_root={coco_shapes}'],
                      ['tools/infer.py', f'{coco_shapes}val2017/000001.jpg', DET_DEMO, diverged, '--out',
                       tmp_path / 'd'],
                      ['tools/export_onnx.py', DET_DEMO, diverged, '--out', tmp_path / 'x.onnx']):
        assert user_error(call_tool(*arguments)).startswith(expected), arguments
    assert not (tmp_path / 'd').exists() and not (tmp_path / 'x.onnx').exists()


# What the user typed is what runs.

def test_a_config_option_keeps_its_spaces(tmp_path):
    spaced = tmp_path / 'my set'
    process = call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'w', '--cfg-options',
                        f'data_root={spaced}/')
    user_error(process)
    assert f'error: CocoDataset data not found: {spaced}/annotations/instances_train2017.json does not exist' in \
        process.stderr
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--cfg-options', "metainfo.classes=['a b', 'c']"))
    assert message.startswith("error: --cfg-options value \"['a b', 'c']\" holds a space inside an element of a list")


def test_a_list_option_with_spaces_after_its_commas_parses():
    from mmlavit.cli.runner import ConfigOptions
    assert ConfigOptions._parse_iterable('[64, 128, 320, 512]') == [64, 128, 320, 512]
    assert ConfigOptions._parse_iterable('/data/my set/') == '/data/my set/'


# The data is checked before the first iteration.

def shifted_ids(root):
    """The shapes set with every annotation's category id one lower (0..2 against the categories' 1..3)."""
    path = root / 'annotations' / 'instances_train2017.json'
    coco = json.loads(path.read_text())
    for annotation in coco['annotations']:
        annotation['category_id'] -= 1
    path.write_text(json.dumps(coco))
    return coco


@pytest.fixture
def coco_copy(coco_shapes, tmp_path):
    root = tmp_path / 'coco'
    shutil.copytree(coco_shapes, root)
    return root


def test_coco_annotations_that_mmdet_would_drop_are_counted(coco_copy, tmp_path):
    coco = shifted_ids(coco_copy)
    dropped = sum(annotation['category_id'] == 0 for annotation in coco['annotations'])
    assert 0 < 2 * dropped < len(coco['annotations'])
    before = snapshot(coco_copy)
    process = call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'w', *det_options(f'{coco_copy}/', 0))
    assert process.returncode == 0, process.stderr[-3000:]
    assert (f'data check (train set): mmdet would drop {dropped} of the {len(coco["annotations"])} annotations of '
            f'{coco_copy}/annotations/instances_train2017.json: {dropped} with category ids the file\'s categories do '
            f'not have ([1, 2, 3]) (one lower than the file\'s ids?) (e.g. annotation ') in process.stdout
    assert snapshot(coco_copy) == before


def edit_annotations(root, split, change):
    path = root / 'annotations' / f'instances_{split}.json'
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


@pytest.mark.parametrize('case,change,expected', [
    ('most-dropped', lambda coco: [a.update(bbox=[0, 0, 0.5, 4]) for a in coco['annotations']],
     'error: mmdet would drop {n} of the {n} annotations of {ann}: {n} with boxes under 1 pixel wide or high, or no '
     'area (e.g. annotation 1 of image 1 (bbox [0, 0, 0.5, 4])'),
    ('outside', lambda coco: [a.update(bbox=[500, 500, 10, 10]) for a in coco['annotations']],
     'error: mmdet would drop {n} of the {n} annotations of {ann}: {n} with boxes outside their image'),
    ('missing-image', lambda coco: coco['images'][2].update(file_name='lost.jpg'),
     'error: 1 of the 8 images that {ann} lists are missing on disk ({root}/train2017/lost.jpg): restore them, or '
     'remove them from the annotation file.'),
    ('no-annotations-left', lambda coco: coco.update(categories=[dict(id=9, name='kite')]),
     'error: mmdet would drop {n} of the {n} annotations of {ann}'),
], ids=['most-dropped', 'outside', 'missing-image', 'no-annotations-left'])
def test_training_data_that_cannot_train_is_an_error(coco_copy, tmp_path, case, change, expected):
    edit_annotations(coco_copy, 'train2017', change)
    ann = coco_copy / 'annotations' / 'instances_train2017.json'
    count = len(json.loads(ann.read_text())['annotations'])
    before = snapshot(coco_copy)
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'w',
                                   *det_options(f'{coco_copy}/', 1)))
    assert message.startswith(expected.format(n=count, ann=ann, root=coco_copy)), message
    assert snapshot(coco_copy) == before and not (tmp_path / 'w').exists()


def test_a_training_set_without_any_annotation(coco_copy, tmp_path):
    edit_annotations(coco_copy, 'train2017', lambda coco: coco.update(annotations=[]))
    message = user_error(call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'w',
                                   *det_options(f'{coco_copy}/', 1)))
    assert message == (f'error: no image of {coco_copy}/annotations/instances_train2017.json has an annotation mmdet '
                       f'trains on: training would stop at its first batch. Check the annotation file and the '
                       f'config\'s classes.')


def test_an_evaluation_set_without_annotations(checkpoint_file, coco_copy, tmp_path):
    edit_annotations(coco_copy, 'val2017', lambda coco: coco.update(annotations=[]))
    message = user_error(call_tool('tools/test.py', DET_DEMO, checkpoint_file, '--work-dir',
                                   tmp_path / 'w', '--cfg-options', f'data_root={coco_copy}/'))
    assert message == (f'error: {coco_copy}/annotations/instances_val2017.json has no annotations: the evaluation '
                       f'would report -1 for every metric. Give the annotated split of the set (or test with another '
                       f'ann_file).')


def test_recorded_sizes_that_differ_from_the_files(coco_copy, tmp_path):
    edit_annotations(coco_copy, 'train2017', lambda coco: coco['images'][0].update(height=256))
    process = call_tool('tools/train.py', DET_DEMO, '--work-dir', tmp_path / 'w', *det_options(f'{coco_copy}/', 0))
    assert process.returncode == 0, process.stderr[-3000:]
    assert (f'data check (train set): 1 images have another size on disk than {coco_copy}/annotations/'
            f'instances_train2017.json records, which the boxes and masks are drawn for: {coco_copy}/train2017/'
            f'000001.jpg (256x128 in the file, 128x128 on disk)') in process.stdout


@pytest.fixture
def ade_copy(ade_shapes, tmp_path):
    root = tmp_path / 'ADEChallengeData2016'
    shutil.copytree(ade_shapes, root)
    return root


def rewrite_map(root, change):
    path = root / 'annotations' / 'training' / 'ADE_train_00000002.png'
    cv2.imwrite(str(path), change(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))
    return path


@pytest.mark.parametrize('change,expected', [
    (lambda labels: labels[:60, :60], 'error: 1 segmentation maps of {maps} have another size than their image '
                                      '({path} (60x60, its image 120x120)): the labels would not lie on the pixels '
                                      'they name'),
    (lambda labels: np.dstack([labels] * 3), 'error: 1 segmentation maps of {maps} have colour channels ({path}): a '
                                            'map holds one class index per pixel'),
    (lambda labels: np.where(labels == 1, 9, labels).astype(np.uint8),
     'error: 1 segmentation maps of {maps} have labels outside the model\'s 4 classes (0..3) and the ignore index '
     '255 after reduce_zero_label (stored value - 1, 0 ignored): {path} (8)'),
], ids=['smaller', 'three-channels', 'labels-outside'])
def test_segmentation_maps_that_do_not_fit_are_errors(ade_copy, tmp_path, change, expected):
    path = rewrite_map(ade_copy, change)
    before = snapshot(ade_copy)
    message = user_error(call_tool('tools/train.py', SEG_DEMO, '--work-dir', tmp_path / 'w', '--cfg-options',
                                   f'data_root={ade_copy}', *SEG_OPTIONS))
    assert message.startswith(expected.format(maps=ade_copy / 'annotations' / 'training', path=path)), message
    assert snapshot(ade_copy) == before and not (tmp_path / 'w').exists()


# Every traceback becomes one line.

def test_test_out_in_a_folder_that_is_a_file(checkpoint_file, coco_shapes, tmp_path):
    blocker = tmp_path / 'results'
    blocker.write_text('mine\n')
    message = user_error(call_tool('tools/test.py', DET_DEMO, checkpoint_file, '--out',
                                   blocker / 'preds.pkl', '--work-dir', tmp_path / 'w', '--cfg-options',
                                   f'data_root={coco_shapes}'))
    assert message == f'error: --out {blocker / "preds.pkl"}: {blocker} is a file, not a folder to write into'
    assert blocker.read_text() == 'mine\n'


def test_amp_optim_wrapper_on_cpu_from_the_config(coco_shapes, tmp_path):
    message = user_error(call_tool('tools/train.py', CLS_DEMO, '--work-dir', tmp_path / 'w', '--cfg-options',
                                   'optim_wrapper.type=AmpOptimWrapper', 'optim_wrapper.dtype=bfloat16'))
    assert message == ('error: optim_wrapper.type=AmpOptimWrapper needs a GPU: mmengine\'s AmpOptimWrapper does not '
                       'run on CPU. Train in float32 on CPU.')


@pytest.mark.parametrize('arguments,expected', [
    (['tools/get_flops.py', '--shape', '0', '0'], "argument --shape: '0' is not a whole number above 0"),
    (['tools/get_flops.py', '--shape', '-64', '64'], "argument --shape: '-64' is not a whole number above 0"),
    (['tools/benchmark.py', '--repeats', '0'], "argument --repeats: '0' is not a whole number above 0"),
])
def test_numbers_out_of_range_are_named(arguments, expected):
    process = call_tool(*arguments)
    assert process.returncode == 2 and process.stderr.strip().splitlines()[-1].endswith(expected)
    assert 'Traceback' not in process.stderr


def test_a_checkpoint_zip_whose_entries_point_outside(coco_shapes, tmp_path):
    torch.save({'state_dict': {'weight': torch.ones(2)}}, tmp_path / 'epoch_1.pth')
    source = zipfile.ZipFile(tmp_path / 'epoch_1.pth')
    slipped = tmp_path / 'slipped.pth'
    with zipfile.ZipFile(slipped, 'w') as target:
        for entry in source.infolist():
            target.writestr('../../' + entry.filename, source.read(entry.filename))
    message = user_error(call_tool('tools/test.py', DET_DEMO, slipped, '--work-dir', tmp_path / 'w',
                                   '--cfg-options', f'data_root={coco_shapes}'))
    assert message.startswith(f'error: {slipped} is not a checkpoint torch can read (RuntimeError: ')
    assert message.endswith('the file is damaged, or was not written by torch.save')


def test_an_unwritable_torch_home(tmp_path, monkeypatch):
    blocker = tmp_path / 'torch_home'
    blocker.write_text('a file where the cache folder would be\n')
    monkeypatch.setenv('TORCH_HOME', str(blocker))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    url = 'http://127.0.0.1:9/lavit_t.pth'
    message = user_error(call_tool('tools/convert_checkpoint.py', url, tmp_path / 'backbone.pth'))
    assert message.startswith(f'error: checkpoint {url} cannot be downloaded into torch.hub\'s cache '
                              f'{blocker}/hub/checkpoints (NotADirectoryError: ')
    assert message.endswith('set TORCH_HOME to a folder you can write, or download the file and pass its local path.')


def test_out_of_memory_is_one_line_with_what_needs_less(untrained_detector, coco_shapes, tmp_path, monkeypatch):
    """As a 6000x6000 image through a segmentor fails on a machine without the memory (simulated)."""
    import mmdet.apis

    def allocate(*args, **kwargs):
        raise RuntimeError('[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you '
                           'tried to allocate 147456000000 bytes.')

    monkeypatch.setattr(mmdet.apis, 'inference_detector', allocate)
    message = user_error(call_tool('tools/infer.py', f'{coco_shapes}val2017/000001.jpg', DET_DEMO,
                                   untrained_detector, '--out', tmp_path / 'drawn'))
    assert message.startswith('error: out of memory ([enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: '
                              'not enough memory')
    assert 'model.test_cfg.mode=slide' in message and 'Resize' in message
