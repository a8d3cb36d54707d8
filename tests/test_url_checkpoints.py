"""Checkpoints named by URL or model-zoo name load as local files do: checked, never running code from them.

A thread serves the checkpoints on 127.0.0.1 over HTTP; torch.hub's cache
($TORCH_HOME/hub/checkpoints) is a temporary directory for every test. Each
tool and framework loader refuses a malicious URL in
tests/test_checkpoint_safety.py, as it refuses a malicious path.
"""
import hashlib
import os
import re
import shutil
import socket
import sys
import types

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import test_checkpoint_safety
from mmlavit import LaViT
from mmlavit.utils.checkpoint import TRUST_ENV, CheckpointError, UntrustedCheckpointError, is_trusted
from tool_calls import run_tool

# The fixtures of tests/test_checkpoint_safety.py: the HTTP server, torch.hub's cache, the malicious file.
checkpoint_server = test_checkpoint_safety.checkpoint_server
hub_cache = test_checkpoint_safety.hub_cache
payload_file = test_checkpoint_safety.payload_file


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def lavit_t_checkpoint(tmp_path):
    """An mmpretrain-style checkpoint of LaViT-T (keys 'backbone.*', logged scalars, numpy): (path, backbone)."""
    backbone = LaViT(arch='t')
    path = tmp_path / 'lavit_t.pth'
    torch.save({'meta': {'epoch': 3, 'eta': np.float64(2.5)},
                'message_hub': {'log_scalars': {'train/loss': HistoryBuffer([1.0, 3.0], [1, 1])}},
                'state_dict': {f'backbone.{key}': value for key, value in backbone.state_dict().items()}}, path)
    return path, backbone


def test_good_checkpoint_loads_from_url_under_its_hash(checkpoint_server, hub_cache, lavit_t_checkpoint):
    path, source = lavit_t_checkpoint
    name = f'lavit_t-{sha256(path)[:8]}.pth'
    url = checkpoint_server.serve(path, name)
    backbone = LaViT(arch='t', init_cfg=dict(type='Pretrained', checkpoint=url, prefix='backbone.'))
    assert not torch.equal(backbone.stages[0].downsample.proj.weight, source.stages[0].downsample.proj.weight)
    backbone.init_weights()
    assert backbone.state_dict().keys() == source.state_dict().keys()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert (hub_cache / name).read_bytes() == path.read_bytes()
    checkpoint = CheckpointLoader.load_checkpoint(url, map_location='cpu')  # now from the cache
    assert checkpoint['message_hub']['log_scalars']['train/loss'].mean() == 2.0


def wrong_hash(path) -> str:
    """Eight hex digits the file's SHA-256 does not start with."""
    digest = sha256(path)
    return f'{(int(digest[0], 16) + 1) % 16:x}{digest[1:8]}'


def test_download_with_another_hash_is_refused_and_removed(checkpoint_server, hub_cache, lavit_t_checkpoint):
    path, _ = lavit_t_checkpoint
    name = f'lavit_t-{wrong_hash(path)}.pth'
    url = checkpoint_server.serve(path, name)
    with pytest.raises(CheckpointError, match=re.escape(
            f'checkpoint {url} was not loaded: its name says its SHA-256 starts with {name[8:16]}, the downloaded '
            f'file\'s is {sha256(path)}')):
        CheckpointLoader.load_checkpoint(url)
    assert os.listdir(hub_cache) == []


def test_cached_file_without_the_hash_of_its_name_is_removed(checkpoint_server, hub_cache, lavit_t_checkpoint,
                                                              payload_file):
    path, _ = lavit_t_checkpoint
    name = f'lavit_t-{sha256(path)[:8]}.pth'
    url = checkpoint_server.serve(path, name)
    hub_cache.mkdir(parents=True)
    shutil.copy(payload_file[0], hub_cache / name)  # a cache entry someone replaced
    with pytest.raises(CheckpointError, match='was removed'):
        CheckpointLoader.load_checkpoint(url)
    assert not (hub_cache / name).exists() and not payload_file[1].exists()
    assert CheckpointLoader.load_checkpoint(url)['meta']['epoch'] == 3  # downloaded again


@pytest.fixture
def unreachable_url():
    """A URL on a port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    return f'http://127.0.0.1:{port}/lavit_t.pth'


def test_unreachable_url_is_a_one_line_error(hub_cache, unreachable_url):
    with pytest.raises(CheckpointError) as error:
        CheckpointLoader.load_checkpoint(unreachable_url)
    message = str(error.value)
    assert message.startswith(f'checkpoint {unreachable_url} could not be downloaded (')
    assert message.endswith('Download the file and pass its local path instead.') and '\n' not in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_unreachable_url_in_a_tool_ends_with_one_line(hub_cache, unreachable_url, tmp_path):
    process = run_tool('tools/convert_checkpoint.py', unreachable_url, tmp_path / 'backbone.pth')
    assert process.returncode == 1 and 'Traceback' not in process.stderr
    last_line = process.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f'error: checkpoint {unreachable_url} could not be downloaded (')
    assert last_line.endswith('pass its local path instead.')


def test_url_in_a_list_of_trusted_checkpoints_loads_in_full(checkpoint_server, hub_cache, payload_file, monkeypatch):
    path, marker = payload_file
    url = checkpoint_server.serve(path)
    monkeypatch.setenv(TRUST_ENV, os.pathsep.join(['/elsewhere/epoch_1.pth', url, 'https://example.org/x.pth']))
    assert not is_trusted(url[:-1]) and not is_trusted(url.replace('http://', 'https://'))
    checkpoint = CheckpointLoader.load_checkpoint(url)
    assert marker.exists() and torch.equal(checkpoint['state_dict']['w'], torch.ones(1))


class FakePavi(types.ModuleType):
    """``pavi.modelcloud`` as mmengine uses it, serving one file."""

    def __init__(self, path):
        super().__init__('pavi')
        model = types.SimpleNamespace(name=path.name, download=lambda destination: shutil.copy(path, destination))
        self.modelcloud = types.SimpleNamespace(get=lambda model_path: model)


@pytest.mark.parametrize('name', ['torchvision://resnet_x', 'modelzoo://resnet_x', 'open-mmlab://resnet_x',
                                  'openmmlab://local_x', 'mmcls://resnet_x', 'pavi://models/x', 's3://bucket/x.pth',
                                  'cluster:s3://bucket/x.pth', 'petrel://bucket/x.pth'])
def test_payload_refused_by_every_scheme(name, checkpoint_server, hub_cache, payload_file, tmp_path, monkeypatch):
    """Each scheme's model-zoo list, store or download resolves to the payload; its loader refuses it."""
    path, marker = payload_file
    url = checkpoint_server.serve(path)
    zoo = {'resnet_x': url, 'local_x': f'checkpoints/{path.name}'}
    for lookup in ('get_torchvision_models', 'get_external_models', 'get_mmcls_models'):
        monkeypatch.setattr(mmengine_checkpoint, lookup, lambda: zoo)
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))
    (tmp_path / 'mmengine_home' / 'checkpoints').mkdir(parents=True)
    shutil.copy(path, tmp_path / 'mmengine_home' / 'checkpoints')
    monkeypatch.setitem(sys.modules, 'pavi', FakePavi(path))
    store = types.SimpleNamespace(get=lambda filename: path.read_bytes())
    monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend', lambda filename, backend_args: store)
    with pytest.raises(UntrustedCheckpointError, match=re.escape(
            f'checkpoint {name} was not loaded: unpickling it needs posix.system')) as error:
        CheckpointLoader.load_checkpoint(name)
    assert f'{TRUST_ENV}={name}' in str(error.value)
    assert not marker.exists()
