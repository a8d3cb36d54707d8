"""Loading a checkpoint never runs code from it, and an interrupted run loses nothing.

The checkpoints are real ones: tools/train.py writes them on generated data for
mmdet, mmseg and mmpretrain. A malicious checkpoint is given by its path and by
a URL that a thread serves on 127.0.0.1 (tests/test_url_checkpoints.py tests
the rest of loading from URLs).
"""
import functools
import http.server
import itertools
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from mmlavit import LaViT
from mmlavit.cli.demo_data import make_ade_shapes, make_coco_shapes, make_imagenet_shapes
from mmlavit.cli.tool_process import REPO
from mmlavit.utils import (
    TRUST_ENV,
    IncompleteCheckpointError,
    UntrustedCheckpointError,
    load_from_local,
    register_safe_checkpoint_loaders,
    unsafe_globals,
)
from mmlavit.utils.remote_checkpoint import SAFE_LOADERS
from tool_calls import run_tool

DET_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'


def det_options(data_root, max_epochs):
    """Tiny Mask R-CNN runs: 8 images in batches of 4, a checkpoint and log line for every epoch and iteration."""
    return ['--cfg-options', f'data_root={data_root}', f'train_cfg.max_epochs={max_epochs}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1']


def start_tool(*args, stdout=subprocess.PIPE):
    """tools/<script> in its own interpreter, not waited for; stderr goes with stdout."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, stdout=stdout, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))


def check_succeeds(process):
    """Waits for a :func:`start_tool` process and checks that it succeeded."""
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def load(path):
    return CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def cut_in_half(source, destination):
    """Writes the first half of ``source`` to ``destination``: a file whose writing stopped midway."""
    data = source.read_bytes()
    destination.write_bytes(data[:len(data) // 2])
    return destination


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes_coco')
    make_coco_shapes(str(root), num_train=8, num_val=4, seed=1)
    return str(root) + '/'


@pytest.fixture(scope='module')
def interrupted_run(coco, tmp_path_factory):
    """The work dir of tools/train.py killed with SIGKILL during epoch 3 (after epoch 2's checkpoint)."""
    work_dir = tmp_path_factory.mktemp('interrupted')
    log_path = work_dir / 'stdout.log'
    deadline = time.monotonic() + 400
    with open(log_path, 'w') as log:
        process = start_tool('tools/train.py', DET_CONFIG, '--work-dir', work_dir, *det_options(coco, 4), stdout=log)
        try:
            while 'Epoch(train) [3][1/2]' not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, 'epoch 3 did not start in time'
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    return work_dir


@pytest.fixture(scope='module')
def framework_checkpoints(request, tmp_path_factory):
    """A checkpoint tools/train.py wrote with each framework (mmseg's and mmpretrain's while mmdet's trains)."""
    root = tmp_path_factory.mktemp('frameworks')
    ade = make_ade_shapes(str(root / 'ade' / 'ADEChallengeData2016'), num_train=8, num_val=2, seed=1)
    imagenet = make_imagenet_shapes(str(root / 'imagenet'), num_train=8, num_val=2, seed=1)
    seg = start_tool('tools/train.py', 'configs/demo/upernet_lavit_t_shapes_ade.py', '--work-dir', root / 'seg',
                     '--cfg-options', f'data_root={ade}', 'train_cfg.max_iters=1', 'train_cfg.val_interval=1',
                     'default_hooks.checkpoint.interval=1')
    cls = start_tool('tools/train.py', 'configs/demo/lavit_t_shapes_imagenet.py', '--work-dir', root / 'cls',
                     '--cfg-options', f'data_root={imagenet}', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
                     'default_hooks.checkpoint.interval=2')
    det_work_dir = request.getfixturevalue('interrupted_run')
    check_succeeds(seg)
    check_succeeds(cls)
    return {'mmdet': det_work_dir / 'epoch_2.pth', 'mmseg': root / 'seg' / 'iter_1.pth',
            'mmpretrain': root / 'cls' / 'epoch_2.pth'}


@pytest.mark.parametrize('framework', ['mmdet', 'mmseg', 'mmpretrain'])
def test_real_checkpoints_need_nothing_beyond_the_allowlist(framework_checkpoints, framework):
    path = framework_checkpoints[framework]
    assert unsafe_globals(str(path)) == []
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(path)  # torch's default elsewhere in the process stays as strict as ever
    allowed_before = torch.serialization.get_safe_globals()
    checkpoint = load(path)
    assert torch.serialization.get_safe_globals() == allowed_before
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and np.isfinite(loss.mean())
    assert checkpoint['meta']['dataset_meta']['classes'] and checkpoint['optimizer']['state']


def test_every_scheme_of_mmengine_loads_safely():
    schemes = dict(CheckpointLoader._schemes)
    assert schemes.pop('') is load_from_local
    assert schemes['http://'] is SAFE_LOADERS[mmengine_checkpoint.load_from_http]
    # A scheme a newer mmengine adds fails here until it has a safe loader.
    assert all(loader.__module__ == 'mmlavit.utils.remote_checkpoint' for loader in schemes.values())


def test_loaders_that_other_code_registered_stay():
    def load_from_elsewhere(filename, map_location):
        return {}

    CheckpointLoader.register_scheme(prefixes=['', 'https://'], loader=load_from_elsewhere, force=True)
    try:
        register_safe_checkpoint_loaders()
        assert CheckpointLoader._schemes[''] is CheckpointLoader._schemes['https://'] is load_from_elsewhere
    finally:
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
        CheckpointLoader.register_scheme(prefixes='https://', loader=SAFE_LOADERS[mmengine_checkpoint.load_from_http],
                                         force=True)


class Numpy1Pickler(pickle._Pickler):
    """Names numpy's functions as pickles written under numpy < 2 do (numpy.core.multiarray)."""

    def save_global(self, obj, name=None):
        module = getattr(obj, '__module__', None) or ''
        if not module.startswith('numpy._core'):
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f'{module.replace("numpy._core", "numpy.core")}\n{obj.__qualname__}\n'.encode())
        self.memoize(obj)


def test_checkpoint_written_under_numpy_1_loads(tmp_path):
    path = tmp_path / 'numpy1.pth'
    pickle_module = types.ModuleType('numpy1_pickle')
    pickle_module.Pickler = Numpy1Pickler
    torch.save({'log': HistoryBuffer([1.0, 3.0], [1, 1]), 'eta': np.float64(2.5)}, path, pickle_module=pickle_module)
    assert 'numpy.core.multiarray._reconstruct' in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    checkpoint = load(path)
    assert checkpoint['log'].mean() == 2.0 and checkpoint['eta'] == 2.5


class Payload:
    """Unpickles as ``os.system(command)``: a checkpoint that runs code."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    timeout = 30  # seconds a silent client may hold its server thread

    def log_message(self, format, *args):
        pass


class CheckpointServer:
    """Serves files over HTTP on 127.0.0.1 (a free port) from a thread, until :meth:`close`."""

    def __init__(self, root):
        self.root = root
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     functools.partial(QuietHandler, directory=str(root)))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.1), daemon=True)
        self.thread.start()
        self.folders = itertools.count()

    def serve(self, path, name=None) -> str:
        """Serves a copy of ``path`` under ``name`` (default: its own) and returns the URL."""
        folder = self.root / str(next(self.folders))
        folder.mkdir()
        shutil.copy(path, folder / (name or path.name))
        return f'http://127.0.0.1:{self.httpd.server_port}/{folder.name}/{name or path.name}'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope='module')
def checkpoint_server(tmp_path_factory):
    server = CheckpointServer(tmp_path_factory.mktemp('served'))
    yield server
    server.close()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """torch.hub's download cache (where URLs are downloaded to), in a fresh $TORCH_HOME."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


@pytest.fixture
def payload_file(tmp_path):
    """A checkpoint file whose loading runs ``touch MARKER``: (path, marker)."""
    marker = tmp_path / 'payload_ran'
    path = tmp_path / 'downloaded.pth'
    torch.save({'meta': {'epoch': 1, 'note': Payload(f'touch {marker}')}, 'state_dict': {'w': torch.ones(1)}}, path)
    return path, marker


@pytest.fixture(params=['path', 'url'])
def payload(request, payload_file):
    """:func:`payload_file` named by its path, or by a URL that serves it: (name, marker)."""
    path, marker = payload_file
    if request.param == 'path':
        return path, marker
    request.getfixturevalue('hub_cache')
    return request.getfixturevalue('checkpoint_server').serve(path), marker


def refusal(path):
    return f'checkpoint {path} was not loaded: unpickling it needs posix.system'


def test_payload_refused_by_checkpoint_loader(payload):
    path, marker = payload
    with pytest.raises(UntrustedCheckpointError, match=re.escape(refusal(path))) as error:
        load(path)
    assert f'{TRUST_ENV}={path}' in str(error.value)
    assert not marker.exists()


def test_payload_refused_by_init_cfg_pretrained(payload):
    path, marker = payload
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(UntrustedCheckpointError, match=re.escape(refusal(path))):
        backbone.init_weights()
    assert not marker.exists()


@pytest.mark.parametrize('framework', ['mmdet', 'mmseg'])
def test_payload_refused_by_framework_model_loaders(payload, framework):
    """mmdet's init_detector and mmseg's init_model, as users call them after `import mmlavit`."""
    path, marker = payload
    if framework == 'mmdet':
        from mmdet.apis import init_detector as init_model
        config = DET_CONFIG
    else:
        from mmseg.apis import init_model
        config = 'configs/demo/upernet_lavit_t_shapes_ade.py'
    with pytest.raises(UntrustedCheckpointError, match=re.escape(refusal(path))):
        init_model(str(REPO / config), str(path), device='cpu')
    assert not marker.exists()


TOOLS_THAT_LOAD = {
    'test': lambda path, coco, out: ['tools/test.py', DET_CONFIG, path, '--work-dir', out, '--cfg-options',
                                     f'data_root={coco}'],
    'infer': lambda path, coco, out: ['tools/infer.py', f'{coco}val2017/000001.jpg', DET_CONFIG, path,
                                      '--out', out],
    'convert_checkpoint': lambda path, coco, out: ['tools/convert_checkpoint.py', path, out / 'backbone.pth'],
    'train_load_from': lambda path, coco, out: ['tools/train.py', DET_CONFIG, '--work-dir', out,
                                                *det_options(coco, 1), f'load_from={path}'],
    'train_resume': lambda path, coco, out: ['tools/train.py', DET_CONFIG, '--work-dir', out, '--resume', path,
                                             *det_options(coco, 1)],
}


@pytest.mark.parametrize('tool,payload', [(tool, name) for tool in TOOLS_THAT_LOAD for name in ('path', 'url')
                                          if (tool, name) != ('train_resume', 'url')], indirect=['payload'])
def test_payload_refused_by_tool(payload, coco, tmp_path, tool):
    path, marker = payload
    process = run_tool(*TOOLS_THAT_LOAD[tool](path, coco, tmp_path / 'out'))
    assert process.returncode == 1, process.stdout[-2000:] + process.stderr[-2000:]
    assert refusal(path) in process.stderr and f'{TRUST_ENV}={path}' in process.stderr
    assert 'Traceback' not in process.stderr
    assert not marker.exists()


def test_infer_draws_with_a_checkpoint_that_training_wrote(coco, interrupted_run, tmp_path):
    process = run_tool('tools/infer.py', f'{coco}val2017/000001.jpg', DET_CONFIG, interrupted_run / 'epoch_2.pth',
                       '--out', tmp_path, '--score-thr', '0')
    assert process.returncode == 0, process.stderr[-3000:]
    assert re.search(r'\d+ detections with score >= 0.0 drawn into', process.stdout)
    assert (tmp_path / '000001.jpg').is_file()


def test_payload_loads_when_trusted(payload, monkeypatch):
    path, marker = payload
    monkeypatch.setenv(TRUST_ENV, str(path))
    checkpoint = load(path)
    assert marker.exists() and torch.equal(checkpoint['state_dict']['w'], torch.ones(1))


def test_run_killed_between_checkpoints_resumes_at_the_last_one(coco, interrupted_run):
    work_dir = interrupted_run
    assert not (work_dir / 'epoch_3.pth').exists()
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'epoch_2.pth')
    process = run_tool('tools/train.py', DET_CONFIG, '--work-dir', work_dir, '--resume', *det_options(coco, 3))
    log = process.stdout + process.stderr
    assert process.returncode == 0, log[-3000:]
    assert 'resumed epoch: 2, iter: 4' in log and 'Epoch(train) [2]' not in log
    before, after = load(work_dir / 'epoch_2.pth'), load(work_dir / 'epoch_3.pth')
    assert after['meta']['iter'] == 6
    assert {float(state['step']) for state in after['optimizer']['state'].values()} == {6.0}
    # LinearLR steps every iteration, MultiStepLR every epoch: two more of one, one more of the other.
    assert [scheduler['last_step'] for scheduler in before['param_schedulers']] == [4, 2]
    assert [scheduler['last_step'] for scheduler in after['param_schedulers']] == [6, 3]


def incomplete(path):
    return f'checkpoint {path} is incomplete'


def test_incomplete_checkpoint_in_tools_test(coco, interrupted_run, tmp_path):
    path = cut_in_half(interrupted_run / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    process = run_tool('tools/test.py', DET_CONFIG, path, '--work-dir', tmp_path, '--cfg-options',
                       f'data_root={coco}')
    assert process.returncode == 1 and incomplete(path) in process.stderr
    assert 'Traceback' not in process.stderr


def test_incomplete_checkpoint_given_to_resume(coco, interrupted_run, tmp_path):
    path = cut_in_half(interrupted_run / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    process = run_tool('tools/train.py', DET_CONFIG, '--work-dir', tmp_path / 'work', '--resume', path,
                       *det_options(coco, 2))
    assert process.returncode == 1 and incomplete(path) in process.stderr
    assert 'Traceback' not in process.stderr


def test_incomplete_checkpoint_in_init_cfg(interrupted_run, tmp_path):
    path = cut_in_half(interrupted_run / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(IncompleteCheckpointError, match=re.escape(incomplete(path))):
        backbone.init_weights()


def test_resume_names_the_previous_checkpoint_when_the_latest_is_incomplete(coco, interrupted_run, tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    complete = shutil.copy2(interrupted_run / 'epoch_1.pth', work_dir)
    latest = cut_in_half(interrupted_run / 'epoch_2.pth', work_dir / 'epoch_2.pth')
    (work_dir / 'last_checkpoint').write_text(str(latest))
    process = run_tool('tools/train.py', DET_CONFIG, '--work-dir', work_dir, '--resume', *det_options(coco, 3))
    assert process.returncode == 1 and incomplete(latest) in process.stderr
    assert f'--resume {complete}' in process.stderr and 'Traceback' not in process.stderr


def test_undecodable_image_stops_training_with_its_name(tmp_path):
    make_coco_shapes(str(tmp_path / 'coco'), num_train=8, num_val=4, seed=1)
    image = tmp_path / 'coco' / 'train2017' / '000003.jpg'
    cut_in_half(image, image)
    process = run_tool('tools/train.py', DET_CONFIG, '--work-dir', tmp_path / 'work',
                       *det_options(f'{tmp_path}/coco/', 1))
    assert process.returncode == 1
    assert f'error: image {image} cannot be decoded' in process.stderr and 'Traceback' not in process.stderr
