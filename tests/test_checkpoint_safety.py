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

from conftest import det_options, succeeded
from mmlavit import LaViT
from mmlavit.cli.tool_process import REPO
from mmlavit.utils.checkpoint import (
    SAFE_GLOBALS,
    TRUST_ENV,
    IncompleteCheckpointError,
    UntrustedCheckpointError,
    load_url,
    register_safe_checkpoint_loaders,
)
from tool_calls import call_tool, run_tool

DET_CONFIG = 'configs/demo/mask_rcnn_lavit_t_shapes.py'


def start_tool(*args, stdout=subprocess.PIPE):
    """tools/<script> in its own interpreter, not waited for; stderr goes with stdout."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, stdout=stdout, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))


def load(path):
    return CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def cut_in_half(source, destination):
    """Writes the first half of ``source`` to ``destination``: a file whose writing stopped midway."""
    data = source.read_bytes()
    destination.write_bytes(data[:len(data) // 2])
    return destination


@pytest.fixture(scope='module')
def interrupted_run(coco_shapes, tmp_path_factory):
    """The work dir of tools/train.py killed with SIGKILL during epoch 2 (after epoch 1's checkpoint)."""
    work_dir = tmp_path_factory.mktemp('interrupted')
    log_path = work_dir / 'stdout.log'
    deadline = time.monotonic() + 400
    with open(log_path, 'w') as log:
        process = start_tool('tools/train.py', DET_CONFIG, '--work-dir', work_dir, *det_options(coco_shapes, 3),
                             stdout=log)
        try:
            while 'Epoch(train) [2][1/2]' not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, 'epoch 2 did not start in time'
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    return work_dir


@pytest.fixture(scope='module')
def framework_checkpoints(det_run, seg_run, cls_run):
    """A checkpoint tools/train.py wrote with each framework."""
    return {'mmdet': det_run.work_dir / 'epoch_2.pth', 'mmseg': seg_run[0] / 'iter_4.pth',
            'mmpretrain': cls_run[0] / 'epoch_2.pth'}


@pytest.mark.slow
@pytest.mark.parametrize('framework', ['mmdet', 'mmseg', 'mmpretrain'])
def test_real_checkpoints_need_nothing_beyond_the_allowlist(framework_checkpoints, framework):
    path = framework_checkpoints[framework]
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(path)  # torch's default elsewhere in the process stays as strict as ever
    allowed_before = set(torch.serialization.get_safe_globals())
    checkpoint = load(path)
    assert set(torch.serialization.get_safe_globals()) == allowed_before
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and np.isfinite(loss.mean())
    assert checkpoint['meta']['dataset_meta']['classes'] and checkpoint['optimizer']['state']


def test_every_scheme_of_mmengine_loads_safely():
    """Every scheme's loader is mmengine's own, wrapped (a scheme a newer mmengine adds is wrapped too), and
    mmengine's downloads go through mmlavit's load_url."""
    schemes = dict(CheckpointLoader._schemes)
    assert {'', 'http://', 'https://', 'torchvision://', 'open-mmlab://', 'mmcls://', 'pavi://'} <= set(schemes)
    for loader in schemes.values():
        assert loader.loads_safely and loader.__wrapped__ is getattr(mmengine_checkpoint, loader.__name__)
    assert mmengine_checkpoint.load_url is load_url


def test_loaders_that_other_code_registered_stay():
    def load_from_elsewhere(filename, map_location):
        return {}

    safe_loaders = dict(CheckpointLoader._schemes)
    CheckpointLoader.register_scheme(prefixes=['', 'https://'], loader=load_from_elsewhere, force=True)
    try:
        register_safe_checkpoint_loaders()
        assert CheckpointLoader._schemes[''] is CheckpointLoader._schemes['https://'] is load_from_elsewhere
        assert CheckpointLoader._schemes['http://'] is safe_loaders['http://']  # wrapped once only
    finally:
        CheckpointLoader._schemes.clear()
        CheckpointLoader._schemes.update(safe_loaders)


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


@pytest.mark.slow
@pytest.mark.parametrize('tool,payload', [(tool, name) for tool in TOOLS_THAT_LOAD for name in ('path', 'url')
                                          if (tool, name) != ('train_resume', 'url')], indirect=['payload'])
def test_payload_refused_by_tool(payload, coco_shapes, tmp_path, tool):
    path, marker = payload
    process = call_tool(*TOOLS_THAT_LOAD[tool](path, coco_shapes, tmp_path / 'out'))
    assert process.returncode == 1, process.stdout[-2000:] + process.stderr[-2000:]
    assert refusal(path) in process.stderr and f'{TRUST_ENV}={path}' in process.stderr
    assert 'Traceback' not in process.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_payload_refused_by_the_test_tool_as_a_process(payload_file, coco_shapes, tmp_path):
    path, marker = payload_file
    process = run_tool(*TOOLS_THAT_LOAD['test'](path, coco_shapes, tmp_path / 'out'))
    assert process.returncode == 1 and refusal(path) in process.stderr and 'Traceback' not in process.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_infer_draws_with_a_checkpoint_that_training_wrote(coco_shapes, det_run, tmp_path):
    process = call_tool('tools/infer.py', f'{coco_shapes}val2017/000001.jpg', DET_CONFIG,
                        det_run.work_dir / 'epoch_2.pth', '--out', tmp_path, '--score-thr', '0')
    assert process.returncode == 0, process.stderr[-3000:]
    assert re.search(r'\d+ detections with score >= 0.0 drawn into', process.stdout)
    assert (tmp_path / '000001.jpg').is_file()


def test_payload_loads_when_trusted(payload, monkeypatch):
    path, marker = payload
    monkeypatch.setenv(TRUST_ENV, str(path))
    checkpoint = load(path)
    assert marker.exists() and torch.equal(checkpoint['state_dict']['w'], torch.ones(1))


@pytest.mark.slow
def test_run_killed_between_checkpoints_resumes_at_the_last_one(coco_shapes, interrupted_run):
    work_dir = interrupted_run
    assert not (work_dir / 'epoch_2.pth').exists()
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'epoch_1.pth')
    log = succeeded(call_tool('tools/train.py', DET_CONFIG, '--work-dir', work_dir, '--resume',
                              *det_options(coco_shapes, 2)))
    assert 'resumed epoch: 1, iter: 2' in log and 'Epoch(train) [1]' not in log
    before, after = load(work_dir / 'epoch_1.pth'), load(work_dir / 'epoch_2.pth')
    assert after['meta']['iter'] == 4
    assert {float(state['step']) for state in after['optimizer']['state'].values()} == {4.0}
    # LinearLR steps every iteration, MultiStepLR every epoch: two more of one, one more of the other.
    assert [scheduler['last_step'] for scheduler in before['param_schedulers']] == [2, 1]
    assert [scheduler['last_step'] for scheduler in after['param_schedulers']] == [4, 2]


def incomplete(path):
    return f'checkpoint {path} is incomplete'


@pytest.mark.slow
def test_incomplete_checkpoint_in_tools_test(coco_shapes, det_run, tmp_path):
    path = cut_in_half(det_run.work_dir / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    process = call_tool('tools/test.py', DET_CONFIG, path, '--work-dir', tmp_path, '--cfg-options',
                        f'data_root={coco_shapes}')
    assert process.returncode == 1 and incomplete(path) in process.stderr
    assert 'Traceback' not in process.stderr


@pytest.mark.slow
def test_incomplete_checkpoint_given_to_resume(coco_shapes, det_run, tmp_path):
    path = cut_in_half(det_run.work_dir / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    process = call_tool('tools/train.py', DET_CONFIG, '--work-dir', tmp_path / 'work', '--resume', path,
                        *det_options(coco_shapes, 2))
    assert process.returncode == 1 and incomplete(path) in process.stderr
    assert 'Traceback' not in process.stderr


@pytest.mark.slow
def test_incomplete_checkpoint_in_init_cfg(det_run, tmp_path):
    path = cut_in_half(det_run.work_dir / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(IncompleteCheckpointError, match=re.escape(incomplete(path))):
        backbone.init_weights()


@pytest.mark.slow
def test_resume_names_the_previous_checkpoint_when_the_latest_is_incomplete(coco_shapes, det_run, tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    complete = shutil.copy2(det_run.work_dir / 'epoch_1.pth', work_dir)
    latest = cut_in_half(det_run.work_dir / 'epoch_2.pth', work_dir / 'epoch_2.pth')
    (work_dir / 'last_checkpoint').write_text(str(latest))
    process = call_tool('tools/train.py', DET_CONFIG, '--work-dir', work_dir, '--resume',
                        *det_options(coco_shapes, 3))
    assert process.returncode == 1 and incomplete(latest) in process.stderr
    assert f'--resume {complete}' in process.stderr and 'Traceback' not in process.stderr


@pytest.mark.slow
def test_undecodable_image_stops_training_with_its_name(coco_shapes, tmp_path):
    shutil.copytree(coco_shapes, tmp_path / 'coco')
    image = tmp_path / 'coco' / 'train2017' / '000003.jpg'
    cut_in_half(image, image)
    process = call_tool('tools/train.py', DET_CONFIG, '--work-dir', tmp_path / 'work',
                        *det_options(f'{tmp_path}/coco/', 1))
    assert process.returncode == 1
    assert f'error: image {image} cannot be decoded' in process.stderr and 'Traceback' not in process.stderr
